"""Official TF checkpoints <-> transformers folders (config.json + model.safetensors), NumPy only.

    from refimpl import convert
    convert.to_transformers("golden/checkpoints/xlnet-tiny", "out/xlnet-tiny-hf", dialect="tf")
    # transformers.AutoModelForPreTraining.from_pretrained("out/xlnet-tiny-hf"): XLNetLMHeadModel
    xlnet.load("out/xlnet-tiny-hf")       # and back: the same weights as the TF checkpoint

Names: each model has one name table beside its official names (bert.transformers_names,
xlnet.weights.transformers_names): transformers name -> (official name, how), where how is "="
(the same array), "T" (transposed: torch Linear weights are [out, in]) or an int i (row i of
the official array: per-layer slices). Writing applies it; `read_transformers` inverts it for
refimpl.loading (tied copies must agree, slices are stacked back).

Config: the official config's fields, plus what reproduces the dialect in transformers: for
"tf" the tanh GELU (`gelu_new`), for "hf" the exact one (`gelu`), layer_norm_eps 1e-12. A
dialect transformers cannot compute (keras' masking, clamp, query-stream self-exclusion,
probability heads) is refused, and so is an XLNet checkpoint with d_head != d_model // n_head
(XLNetConfig derives d_head). See README "A bridge to transformers" for what differs anyway.

Weights are written in the checkpoint's dtype (float32 for the official releases), and
config.json says so ("dtype"): transformers 5 loads that dtype by default. For float64, call
`.double()` on the loaded model: `from_pretrained(dtype=torch.float64)` leaves XLNet's
FloatTensor parameters in float32.

safetensors (the [convert] extra) is imported only when a folder is written or read.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np

from refimpl import bert, dialects, loading
from refimpl.xlnet import weights

SAFETENSORS_HINT = "pip install 'refimpl[convert]'"

# which files make a TF checkpoint folder of each model
OFFICIAL_CONFIG = {"bert": "bert_config.json", "xlnet": "xlnet_config.json"}

# official config keys that carry over to transformers' config unchanged, when present
_BERT_EXTRAS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")

# transformers' activation names for each GELU form of a dialect
_GELU = {"tanh": "gelu_new", "erf": "gelu"}

# transformers' names that refimpl reads back as the official "gelu" (the dialect then chooses
# the form: "gelu_new" is what dialect "tf" computes, "gelu" what dialect "hf" computes)
_FROM_TRANSFORMERS_ACTIVATION = {"gelu": "gelu", "gelu_new": "gelu", "relu": "relu"}


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("reading or writing a transformers folder (model.safetensors) needs the "
                          f"safetensors package: {SAFETENSORS_HINT}") from None
    return safetensors.numpy


# --- the dialect: what transformers can compute -------------------------------------------------
def _check_dialect(dialect, model: str) -> dialects.Dialect:
    """The Dialect, if transformers can compute it for `model`; else a ValueError naming every
    field it cannot express."""
    d = dialects.get(dialect)
    hf = dialects.get("hf")
    fields = {"bert": ("bert_mask_from_token_zero", "heads"),
              "xlnet": ("xlnet_mask", "clamp", "query_excludes_self", "heads", "xlnet_pad_id",
                        "xlnet_padded_self_visible")}[model]
    wrong = [f"{name}={getattr(d, name)!r} (transformers: {getattr(hf, name)!r})"
             for name in fields if getattr(d, name) != getattr(hf, name)]
    if d.gelu not in _GELU:
        wrong.append(f"gelu={d.gelu!r} (transformers: 'tanh' or 'erf')")
    if wrong:
        raise ValueError(f"dialect {d.name!r} cannot be expressed in a transformers {model} "
                         f"config: {', '.join(wrong)}; use dialect 'tf' or 'hf'")
    return d


# --- configs -------------------------------------------------------------------------------------
def _bert_config(c, official: dict, d: dialects.Dialect, architecture: str) -> dict:
    if c.hidden_act not in ("gelu", "relu", "tanh"):
        raise ValueError(f"hidden_act {c.hidden_act!r}: expected gelu, relu or tanh to convert")
    return {"architectures": [architecture], "model_type": "bert",
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
            "intermediate_size": c.intermediate_size,
            "hidden_act": _GELU[d.gelu] if c.hidden_act == "gelu" else c.hidden_act,
            "max_position_embeddings": c.max_position_embeddings,
            "type_vocab_size": c.type_vocab_size, "layer_norm_eps": d.layer_norm_eps,
            **{k: official[k] for k in _BERT_EXTRAS if k in official},
            "pad_token_id": 0, "tie_word_embeddings": True}


def _xlnet_config(c, official: dict, d: dialects.Dialect, architecture: str) -> dict:
    if c.d_head * c.n_head != c.d_model:
        raise ValueError(f"d_head {c.d_head} != d_model {c.d_model} // n_head {c.n_head}: "
                         "transformers' XLNetConfig derives d_head = d_model // n_head and cannot "
                         "express this checkpoint")
    return {"architectures": [architecture], "model_type": "xlnet",
            "vocab_size": c.n_token, "d_model": c.d_model, "n_layer": c.n_layer,
            "n_head": c.n_head, "d_head": c.d_head, "d_inner": c.d_inner,
            "ff_activation": _GELU[d.gelu] if c.ff_activation == "gelu" else c.ff_activation,
            "untie_r": c.untie_r, "layer_norm_eps": d.layer_norm_eps,
            # run-time options in refimpl (forward's arguments), model settings in transformers:
            # the original's defaults; set them on the loaded model's config as needed
            "attn_type": "bi", "bi_data": False, "clamp_len": -1, "same_length": False,
            "mem_len": None, "reuse_len": None, "use_mems_eval": True,
            "tie_word_embeddings": True}


def _read_json(path: str) -> dict:
    from refimpl import loading
    return loading.read_json(path)


def _field(raw: dict, key: str, path: str, default=None, kind=int):
    value = raw.get(key, default)
    if value is None:
        raise ValueError(f"{path}: missing key {key!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{path}: {key} {value!r}, expected a positive integer")
    return value


def _activation_from(raw: dict, key: str, path: str, default: str) -> str:
    name = raw.get(key, default)
    if name not in _FROM_TRANSFORMERS_ACTIVATION:
        raise ValueError(f"{path}: {key} {name!r}: refimpl computes "
                         f"{', '.join(_FROM_TRANSFORMERS_ACTIVATION)}")
    return _FROM_TRANSFORMERS_ACTIVATION[name]


def _check_eps(raw: dict, path: str) -> None:
    eps = raw.get("layer_norm_eps", 1e-12)
    if eps != 1e-12:
        raise ValueError(f"{path}: layer_norm_eps {eps!r}: refimpl takes the LayerNorm epsilon "
                         "from the dialect (1e-12 in 'tf' and 'hf'), expected 1e-12")


def official_config(raw: dict, path: str):
    """A transformers config.json (dict) -> refimpl's BertConfig / XLNetConfig."""
    model_type = raw.get("model_type")
    if model_type == "bert":
        if raw.get("position_embedding_type", "absolute") != "absolute" or raw.get("is_decoder"):
            raise ValueError(f"{path}: refimpl computes BERT encoders with absolute positions "
                             "(position_embedding_type 'absolute', is_decoder false)")
        _check_eps(raw, path)
        config = bert.BertConfig(
            **{k: _field(raw, k, path) for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                 "num_attention_heads", "intermediate_size",
                                                 "max_position_embeddings", "type_vocab_size")},
            hidden_act=_activation_from(raw, "hidden_act", path, "gelu"))
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"{path}: hidden_size {config.hidden_size} is not a multiple of "
                             f"num_attention_heads {config.num_attention_heads}")
        return config
    if model_type == "xlnet":
        _check_eps(raw, path)
        d_model, n_head = _field(raw, "d_model", path), _field(raw, "n_head", path)
        if d_model % n_head:
            raise ValueError(f"{path}: d_model {d_model} is not a multiple of n_head {n_head}")
        untie_r = raw.get("untie_r", True)
        if not isinstance(untie_r, bool):
            raise ValueError(f"{path}: untie_r {untie_r!r}, expected true or false")
        return weights.XLNetConfig(
            d_head=d_model // n_head, d_inner=_field(raw, "d_inner", path), d_model=d_model,
            ff_activation=_activation_from(raw, "ff_activation", path, "gelu"), n_head=n_head,
            n_layer=_field(raw, "n_layer", path), n_token=_field(raw, "vocab_size", path),
            untie_r=untie_r)
    raise ValueError(f"{path}: model_type {model_type!r}, expected 'bert' or 'xlnet'")


# --- the name table, both ways -------------------------------------------------------------------
def name_table(model: str, config) -> dict:
    """transformers name -> (official name, how) for `model` ("bert" or "xlnet")."""
    return bert.transformers_names(config) if model == "bert" else weights.transformers_names(config)


def to_transformers_tensors(values: dict, table: dict) -> dict[str, np.ndarray]:
    """{official name: array} -> {transformers name: array} for every table entry whose official
    name is in `values`."""
    out = {}
    for name, (official, how) in table.items():
        if official not in values:
            continue
        value = np.asarray(values[official])
        if how == "T":
            value = value.T
        elif isinstance(how, int):
            value = value[how]
        out[name] = np.ascontiguousarray(value)
    return out


def from_transformers_tensors(tensors: dict, table: dict, where: str) -> tuple[dict, dict]:
    """{transformers name: array} -> ({official name: array}, {official name: its transformers
    names}). An official name is produced only when all of its transformers names are present
    (the loader then reports the others missing); names outside the table are passed through
    unchanged (and reported as unexpected). Tied copies ("=" in several places) must be equal."""
    groups: dict[str, list] = {}
    for name, (official, how) in table.items():
        groups.setdefault(official, []).append((name, how))
    values, aliases = {}, {}
    problems = []
    for official, entries in groups.items():
        aliases[official] = ", ".join(n for n, _ in entries) if len(entries) <= 2 else \
            f"{entries[0][0]}, ... ({len(entries)} transformers names)"
        if not all(n in tensors for n, _ in entries):
            continue
        if all(isinstance(how, int) for _, how in entries):  # per-layer slices: stack them
            values[official] = np.stack([tensors[n] for n, _ in sorted(entries, key=lambda e: e[1])])
            continue
        first, how = entries[0]
        value = tensors[first].T if how == "T" else tensors[first]
        for other, _ in entries[1:]:
            if tensors[other].shape != tensors[first].shape or \
                    not np.array_equal(tensors[other], tensors[first]):
                problems.append(f"{other} differs from {first}: both hold {official}, one array in "
                                "the official model (untie_r false in config.json: set it to true "
                                "if the layers' copies were trained apart)")
        values[official] = value
    if problems:
        raise ValueError(f"{where}:\n  " + "\n  ".join(problems))
    mapped = set(table)
    values.update({n: v for n, v in tensors.items() if n not in mapped})
    return values, aliases


# --- reading a transformers folder (refimpl.loading calls this) ---------------------------------
_BASE_PREFIX = {"bert": "bert.", "xlnet": "transformer."}
# transformers' tied duplicates and buffers a folder may hold: read past, listed as skipped
_TIED_COPIES = {"bert": ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                         "bert.embeddings.position_ids", "bert.embeddings.token_type_ids"),
                "xlnet": ("lm_loss.weight",)}


def _read_safetensors(folder: str) -> tuple[dict, str]:
    """Every tensor of model.safetensors, or of the shards a model.safetensors.index.json lists."""
    st = _safetensors_numpy()
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single):
        files = [single]
    else:
        index = os.path.join(folder, "model.safetensors.index.json")
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: no weight_map")
        files = [os.path.join(folder, f) for f in sorted(set(weight_map.values()))]
        single = index
    tensors = {}
    for path in files:
        try:
            tensors.update(st.load_file(path))
        except Exception as e:  # safetensors raises its own error types (and TypeError for bf16)
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    return tensors, single


def _canonical_names(tensors: dict, table: dict, model: str) -> dict:
    """Accept the layouts transformers folders come in: saved from the bare model (no "bert." /
    "transformer." prefix) and legacy LayerNorm.gamma / .beta names."""
    prefix = _BASE_PREFIX[model]
    out = {}
    for name, value in tensors.items():
        candidates = [name, prefix + name]
        for base in list(candidates):
            if base.endswith(".gamma") or base.endswith(".beta"):
                candidates.append(base.rsplit(".", 1)[0] + (".weight" if base.endswith(".gamma") else ".bias"))
        known = [c for c in candidates if c in table or c in _TIED_COPIES[model]]
        out[known[0] if known else name] = value
    return out


def read_transformers(path, model: str) -> loading.Variables:
    """A transformers folder (config.json + model.safetensors) as refimpl.loading.Variables:
    the official config and {official name: array}."""
    folder = os.fspath(path)
    config_path = os.path.join(folder, loading.TRANSFORMERS_CONFIG)
    raw = _read_json(config_path)
    if raw.get("model_type") != model:
        raise ValueError(f"{config_path}: model_type {raw.get('model_type')!r}, expected "
                         f"{model!r} (load it with refimpl.{raw.get('model_type', 'bert')}.load)")
    config = official_config(raw, config_path)
    tensors, source = _read_safetensors(folder)
    table = {**name_table(model, config), **_head_from_config(model, raw)}
    where = f"{source} does not match {config_path}"
    tensors = _canonical_names(tensors, table, model)
    values, aliases = from_transformers_tensors(tensors, table, where)
    return loading.Variables(config, values, source, loading.TRANSFORMERS_CONFIG, where,
                             aliases, frozenset(n for n in _TIED_COPIES[model] if n in values))


# --- writing ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Converted:
    out_dir: str
    model: str  # "bert" or "xlnet"
    architecture: str  # what AutoModelForPreTraining builds from it
    tensors: int  # number of tensors written
    zero_filled: tuple  # official names the checkpoint lacks, written as zeros (see to_transformers)
    skipped: tuple  # checkpoint names refimpl does not use (global_step, optimizer slots)
    unmapped: tuple = ()  # weights with no counterpart in the transformers class: not written

    def summary(self) -> str:
        lines = [f"wrote {self.out_dir}/config.json and model.safetensors: {self.model}, "
                 f"{self.architecture}, {self.tensors} tensors"]
        if self.zero_filled:
            lines.append(f"written as zeros (absent from the checkpoint; transformers always has "
                         f"them): {', '.join(self.zero_filled)}")
        if self.unmapped:
            lines.append(f"NOT CONVERTED (no counterpart in {self.architecture}): "
                         f"{', '.join(self.unmapped)}")
        if self.skipped:
            lines.append(f"not converted (training state): {len(self.skipped)} names "
                         f"({', '.join(self.skipped[:3])}{', ...' if len(self.skipped) > 3 else ''})")
        return "\n".join(lines)


def detect_model(path) -> str:
    """"bert" or "xlnet": which official config file sits beside the checkpoint."""
    path = os.fspath(path)
    directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
    found = [m for m, f in OFFICIAL_CONFIG.items() if os.path.isfile(os.path.join(directory, f))]
    if len(found) != 1:
        raise ValueError(f"{directory}: expected an official checkpoint folder holding exactly one "
                         f"of {', '.join(OFFICIAL_CONFIG.values())}, found "
                         f"{', '.join(OFFICIAL_CONFIG[m] for m in found) or 'none'}")
    return found[0]


def _official_files(model: str) -> tuple:
    if model == "bert":
        return bert.CONFIG_FILE, bert.CHECKPOINT_FILE, bert.BertConfig.from_json
    return weights.CONFIG_FILE, weights.CHECKPOINT_FILE, weights.XLNetConfig.from_json


def _official_variables(path, model: str):
    """({official name: array} of every part present, skipped names, expected {part: {name:
    shape}}) of an official checkpoint, checked as the loaders check it (unknown or missing
    names, shapes)."""
    v = loading.read_variables(path, model, *_official_files(model))
    if model == "bert":
        base, head_names = bert._expected_names(v.config), bert.head_names
        optional, skippable = bert.OPTIONAL_PARTS, bert._skippable
    else:
        base, head_names = weights.expected_names(v.config), weights.head_names
        optional, skippable = weights.OPTIONAL_PARTS, weights.skippable
    heads = head_names(v.config, {n: x.shape for n, x in v.values.items()})
    expected, optional = {**base, **heads}, optional + tuple(heads)
    present, skipped = loading.match_variables(v.values, expected, optional, skippable,
                                               v.config_file, v.where)
    values = {name: value for part in present.values() for name, value in part.items()}
    held_heads = tuple(part for part in heads if present[part])
    return values, skipped, expected, held_heads


def _head(model: str, heads: tuple, values: dict) -> tuple[str, dict, dict]:
    """(transformers class, name table of the head, config fields) for the fine-tuning head the
    checkpoint holds; ("", {}, {}) for none. Refuses what transformers cannot express."""
    if model == "bert":
        architecture, table = bert.transformers_head_names(heads)
        extra = {"num_labels": int(values["output_weights"].shape[0])} if "classifier" in heads else \
            {"num_labels": 2} if architecture else {}
        return architecture, table, extra
    if "summary_attn" in heads:
        raise ValueError("the checkpoint's sequence summary is summary_type 'attn' "
                         "(model/sequnece_summary/abs_attn/*): transformers' XLNetSequenceSummary "
                         "has no 'attn' summary")
    tasks = [h for h in heads if h.startswith(("classification_", "regression_"))]
    if len(tasks) > 1 or (tasks and ("race" in heads or "squad" in heads)):
        raise ValueError(f"the checkpoint holds several heads ({', '.join(heads)}): a transformers "
                         "model has one")
    architecture, table = weights.transformers_head_names(heads)
    extra = {}
    if architecture in ("XLNetForSequenceClassification", "XLNetForMultipleChoice"):
        # The original's tanh belongs to the summary projection (summarize_sequence); without
        # one (run_classifier.py's regression tasks) there is none. transformers applies
        # summary_activation whether or not it projects, so it must be "linear" then.
        use_proj = "model/sequnece_summary/summary/kernel" in values
        extra = {"summary_type": "last", "summary_activation": "tanh" if use_proj else "linear",
                 "summary_use_proj": use_proj}
    if tasks:  # the task's name is kept in transformers' finetuning_task, for loading back
        extra["finetuning_task"] = tasks[0].split("_", 1)[1]
    if tasks and tasks[0].startswith("regression_"):
        extra.update(num_labels=1, problem_type="regression")
    elif tasks:
        extra["num_labels"] = int(values[f"model/{tasks[0]}/logit/kernel"].shape[1])
    return architecture, table, extra


def _head_from_config(model: str, raw: dict) -> dict:
    """The head table of a transformers folder's architecture (the inverse of _head)."""
    architecture = (raw.get("architectures") or [""])[0]
    if model == "bert":
        heads = {"BertForSequenceClassification": ("classifier",),
                 "BertForQuestionAnswering": ("squad",)}.get(architecture, ())
        return bert.transformers_head_names(heads)[1]
    if architecture == "XLNetForSequenceClassification":
        kind = "regression" if raw.get("problem_type") == "regression" else "classification"
        heads = (f"{kind}_{raw.get('finetuning_task') or 'default'}",)
    else:
        heads = {"XLNetForMultipleChoice": ("race",),
                 "XLNetForQuestionAnswering": ("squad",)}.get(architecture, ())
    return weights.transformers_head_names(heads)[1]


def to_transformers(path, out_dir, dialect="tf") -> Converted:
    """Write `out_dir`/config.json and model.safetensors from an official TF checkpoint (a model
    directory or checkpoint prefix): BERT -> BertForPreTraining, XLNet -> XLNetLMHeadModel (or
    the bare BertModel / XLNetModel when the pre-training heads are absent).

    dialect "tf" (the original code: tanh GELU) or "hf" (exact GELU); anything transformers
    cannot compute is a ValueError. XLNet's seg_embed + r_s_bias (absent from a model built
    without segment ids) and mask_emb (absent without a query stream) are written as zeros:
    transformers always has them, and zeros add nothing to the segment term."""
    st = _safetensors_numpy()  # before any work: the [convert] extra may be missing
    model = detect_model(path)
    d = _check_dialect(dialect, model)
    config_file, checkpoint_file, read_config = _official_files(model)
    if loading.is_transformers_folder(path, config_file, checkpoint_file):
        raise ValueError(f"{path} is a transformers folder already; convert reads an official "
                         "TF checkpoint")
    config_path, _ = loading.find_files(path, config_file, checkpoint_file)
    config, official = read_config(config_path), _read_json(config_path)
    make_config = _bert_config if model == "bert" else _xlnet_config
    make_config(config, official, d, "")  # refuses what transformers cannot express, before reading weights
    values, skipped, expected, heads = _official_variables(path, model)
    head_architecture, head_table, head_config = _head(model, heads, values)
    zero_filled = []
    if model == "bert":
        pretraining = ("pooler", "mlm", "nsp")
        architecture = "BertForPreTraining" if all(
            name in values for part in pretraining for name in expected[part]) else "BertModel"
    else:
        for part in ("segment", "mask_emb"):
            for name, shape in expected[part].items():
                if name not in values:
                    values[name] = np.zeros(shape, np.float32)
                    zero_filled.append(name)
        architecture = "XLNetLMHeadModel" if "model/lm_loss/bias" in values else "XLNetModel"
    architecture = head_architecture or architecture  # a fine-tuned checkpoint: its head's class
    hf_config = {**make_config(config, official, d, architecture), **head_config}
    table = {**name_table(model, config), **head_table}
    if architecture == "BertForQuestionAnswering":  # built without the pooler (run_squad's has one)
        table = {n: entry for n, entry in table.items() if not n.startswith("bert.pooler.")}
    tensors = to_transformers_tensors(values, table)
    mapped = {official for official, _ in table.values()}
    unmapped = tuple(sorted(n for n in values if n not in mapped))
    if architecture in ("BertModel", "XLNetModel"):  # the bare model's names have no prefix
        prefix = _BASE_PREFIX[model]
        tensors = {n[len(prefix):]: v for n, v in tensors.items() if n.startswith(prefix)}
    dtypes = {v.dtype for v in tensors.values()}
    hf_config["dtype"] = str(dtypes.pop()) if len(dtypes) == 1 else "float32"

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    st.save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, loading.TRANSFORMERS_CONFIG), "w", encoding="utf-8") as f:
        json.dump(hf_config, f, indent=2)
        f.write("\n")
    return Converted(out_dir, model, architecture, len(tensors), tuple(zero_filled), skipped,
                     unmapped)


def main(checkpoint, out_dir, dialect="tf") -> int:
    """`refimpl convert CKPT OUT_DIR [--dialect tf|hf]`: convert, print a summary; 0 on success,
    2 with a message on stderr for unusable input. A broken checkpoint file raises
    refimpl.checkpoint.CheckpointError (the CLI exits 1)."""
    from refimpl import checkpoint as ckpt
    try:
        result = to_transformers(checkpoint, out_dir, dialect)
    except ckpt.CheckpointError:
        raise
    except (ValueError, ImportError) as e:
        print(f"refimpl convert: error: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    print(f"load it: transformers.AutoModelForPreTraining.from_pretrained({result.out_dir!r})")
    return 0
