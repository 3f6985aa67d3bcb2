"""Write the tiny checkpoints under golden/checkpoints/ in the layout of the official releases.

    python tools/make_checkpoints.py [--out golden/checkpoints]

Each model is written with TensorFlow's `tf.compat.v1.train.Saver` (as google-research/bert and
zihangdai/xlnet wrote their releases), with `global_step`, the official variable names, shapes
and config JSON. Values come from a NumPy generator seeded per model, so a rerun writes the same
tensors. Weights have std 0.3 (not the 0.02 of training init) so that attention is far from
uniform and a wrong mask or shift shows up as a large error.

Like the official zips, each folder holds the config JSON and the .index/.data files; the
`.meta` graph and the `checkpoint` state file are not written (nothing reads them).
The sha256 of every file and the command are recorded in MANIFEST.json beside the folders.

FINE_TUNED adds checkpoints in the layout the original fine-tuning scripts save: the encoder
without the pre-training heads, the task head's variables, the optimizer state and global_step.
XLNet's scripts use tf.train.AdamOptimizer when --weight_decay is 0 (their default: slots
<var>/Adam, <var>/Adam_1 and beta1_power, beta2_power) and AdamWeightDecayOptimizer otherwise
(<var>/adam_m, <var>/adam_v, as google-research/bert always does); both forms are written.
`--models NAME ...` writes only those folders and updates their MANIFEST.json entries.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BERT_TINY = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "max_position_embeddings": 16,
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "type_vocab_size": 2,
    "vocab_size": 100,
}

XLNET_TINY = {
    "d_head": 8,
    "d_inner": 64,
    "d_model": 32,
    "ff_activation": "gelu",
    "n_head": 4,
    "n_layer": 3,
    "n_token": 100,
    "untie_r": True,
}

STD = 0.3


def _dense(rng, shape):
    return rng.normal(0.0, rng.std, size=shape).astype(np.float32)


class _Rng:
    """A seeded generator whose normal() draws weights of the chosen std (float32)."""

    def __init__(self, seed: int, std: float):
        self.gen, self.std = np.random.default_rng(seed), std

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self.gen.normal(loc, scale, size=size)


def _layer_norm(rng, prefix, width):
    return {
        f"{prefix}/gamma": (1.0 + 0.1 * rng.normal(size=width)).astype(np.float32),
        f"{prefix}/beta": (0.1 * rng.normal(size=width)).astype(np.float32),
    }


def bert_variables(config: dict, seed: int, std: float = STD) -> dict[str, np.ndarray]:
    """Every variable of an official BERT pre-training checkpoint (google-research/bert)."""
    rng = _Rng(seed, std)
    h, i = config["hidden_size"], config["intermediate_size"]
    v = {
        "bert/embeddings/word_embeddings": _dense(rng, (config["vocab_size"], h)),
        "bert/embeddings/token_type_embeddings": _dense(rng, (config["type_vocab_size"], h)),
        "bert/embeddings/position_embeddings": _dense(rng, (config["max_position_embeddings"], h)),
        **_layer_norm(rng, "bert/embeddings/LayerNorm", h),
    }
    for n in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            v[f"{p}/attention/self/{part}/kernel"] = _dense(rng, (h, h))
            v[f"{p}/attention/self/{part}/bias"] = _dense(rng, (h,))
        v[f"{p}/attention/output/dense/kernel"] = _dense(rng, (h, h))
        v[f"{p}/attention/output/dense/bias"] = _dense(rng, (h,))
        v.update(_layer_norm(rng, f"{p}/attention/output/LayerNorm", h))
        v[f"{p}/intermediate/dense/kernel"] = _dense(rng, (h, i))
        v[f"{p}/intermediate/dense/bias"] = _dense(rng, (i,))
        v[f"{p}/output/dense/kernel"] = _dense(rng, (i, h))
        v[f"{p}/output/dense/bias"] = _dense(rng, (h,))
        v.update(_layer_norm(rng, f"{p}/output/LayerNorm", h))
    v["bert/pooler/dense/kernel"] = _dense(rng, (h, h))
    v["bert/pooler/dense/bias"] = _dense(rng, (h,))
    v["cls/predictions/transform/dense/kernel"] = _dense(rng, (h, h))
    v["cls/predictions/transform/dense/bias"] = _dense(rng, (h,))
    v.update(_layer_norm(rng, "cls/predictions/transform/LayerNorm", h))
    v["cls/predictions/output_bias"] = _dense(rng, (config["vocab_size"],))
    v["cls/seq_relationship/output_weights"] = _dense(rng, (2, h))
    v["cls/seq_relationship/output_bias"] = _dense(rng, (2,))
    return v


def xlnet_variables(config: dict, seed: int, std: float = STD) -> dict[str, np.ndarray]:
    """Every variable of an official XLNet pre-trained checkpoint (zihangdai/xlnet)."""
    rng = _Rng(seed, std)
    d, n, dh, L = config["d_model"], config["n_head"], config["d_head"], config["n_layer"]
    bias_shape = (L, n, dh) if config["untie_r"] else (n, dh)
    t = "model/transformer"
    v = {
        f"{t}/word_embedding/lookup_table": _dense(rng, (config["n_token"], d)),
        f"{t}/mask_emb/mask_emb": _dense(rng, (1, 1, d)),
        f"{t}/r_w_bias": _dense(rng, bias_shape),
        f"{t}/r_r_bias": _dense(rng, bias_shape),
        f"{t}/r_s_bias": _dense(rng, bias_shape),
        f"{t}/seg_embed": _dense(rng, (L, 2, n, dh)),
    }
    for layer in range(L):
        p = f"{t}/layer_{layer}"
        for part in ("q", "k", "v", "o", "r"):
            v[f"{p}/rel_attn/{part}/kernel"] = _dense(rng, (d, n, dh))
        v.update(_layer_norm(rng, f"{p}/rel_attn/LayerNorm", d))
        v[f"{p}/ff/layer_1/kernel"] = _dense(rng, (d, config["d_inner"]))
        v[f"{p}/ff/layer_1/bias"] = _dense(rng, (config["d_inner"],))
        v[f"{p}/ff/layer_2/kernel"] = _dense(rng, (config["d_inner"], d))
        v[f"{p}/ff/layer_2/bias"] = _dense(rng, (d,))
        v.update(_layer_norm(rng, f"{p}/ff/LayerNorm", d))
    v["model/lm_loss/bias"] = _dense(rng, (config["n_token"],))
    return v


def save_v1_saver(variables: dict[str, np.ndarray], prefix: str, global_step: int = 0) -> None:
    """Save with tf.compat.v1.train.Saver in a fresh graph, as the official releases were."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        for name, value in variables.items():
            tf1.get_variable(name, initializer=tf.constant(value))
        step = tf1.train.get_or_create_global_step()
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(step.assign(global_step))
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)


# --- fine-tuned layouts ------------------------------------------------------------------------
def _head_rng(seed: int) -> _Rng:
    """A second generator per model for the head variables (the encoder's stay those of seed)."""
    return _Rng([seed, 1], STD)


def bert_classifier_variables(config: dict, seed: int, num_labels: int = 3) -> dict[str, np.ndarray]:
    """google-research/bert run_classifier.py: the encoder and pooler, output_weights
    [num_labels, H], output_bias; no cls/predictions, no cls/seq_relationship."""
    v = {n: x for n, x in bert_variables(config, seed).items() if not n.startswith("cls/")}
    rng, h = _head_rng(seed), config["hidden_size"]
    v["output_weights"] = _dense(rng, (num_labels, h))
    v["output_bias"] = _dense(rng, (num_labels,))
    return v


def bert_squad_variables(config: dict, seed: int) -> dict[str, np.ndarray]:
    """google-research/bert run_squad.py: the encoder (and pooler, built by BertModel),
    cls/squad/output_weights [2, H], cls/squad/output_bias [2]."""
    v = {n: x for n, x in bert_variables(config, seed).items() if not n.startswith("cls/")}
    rng, h = _head_rng(seed), config["hidden_size"]
    v["cls/squad/output_weights"] = _dense(rng, (2, h))
    v["cls/squad/output_bias"] = _dense(rng, (2,))
    return v


def _xlnet_encoder(config: dict, seed: int) -> dict[str, np.ndarray]:
    """The pre-trained variables a fine-tuning graph builds: no mask_emb (no inp_q), no lm_loss."""
    return {n: x for n, x in xlnet_variables(config, seed).items()
            if n not in ("model/transformer/mask_emb/mask_emb", "model/lm_loss/bias")}


def _summary(rng, config: dict, attn: bool, proj: bool) -> dict[str, np.ndarray]:
    """modeling.py summarize_sequence's variables (scope sequnece_summary, sic)."""
    d, n, dh = config["d_model"], config["n_head"], config["d_head"]
    s, v = "model/sequnece_summary", {}
    if attn:
        v[f"{s}/summary_bias"] = _dense(rng, (d,))
        for part in ("q", "k", "v", "o"):
            v[f"{s}/abs_attn/{part}/kernel"] = _dense(rng, (d, n, dh))
        v.update(_layer_norm(rng, f"{s}/abs_attn/LayerNorm", d))
    if proj:
        v[f"{s}/summary/kernel"] = _dense(rng, (d, d))
        v[f"{s}/summary/bias"] = _dense(rng, (d,))
    return v


def xlnet_classifier_variables(config: dict, seed: int) -> dict[str, np.ndarray]:
    """zihangdai/xlnet run_classifier.py, --task_name=yelp5 (5 classes), --summary_type=attn,
    --use_summ_proj=True: summary attention + projection, model/classification_yelp5/logit."""
    v, rng, d = _xlnet_encoder(config, seed), _head_rng(seed), config["d_model"]
    v.update(_summary(rng, config, attn=True, proj=True))
    v["model/classification_yelp5/logit/kernel"] = _dense(rng, (d, 5))
    v["model/classification_yelp5/logit/bias"] = _dense(rng, (5,))
    return v


def xlnet_regression_variables(config: dict, seed: int) -> dict[str, np.ndarray]:
    """zihangdai/xlnet run_classifier.py --is_regression, --task_name=sts-b, --summary_type=last,
    --use_summ_proj=False: no summary variables, model/regression_sts-b/logit [d, 1]."""
    v, rng, d = _xlnet_encoder(config, seed), _head_rng(seed), config["d_model"]
    v["model/regression_sts-b/logit/kernel"] = _dense(rng, (d, 1))
    v["model/regression_sts-b/logit/bias"] = _dense(rng, (1,))
    return v


def xlnet_squad_variables(config: dict, seed: int) -> dict[str, np.ndarray]:
    """zihangdai/xlnet run_squad.py (function_builder.get_qa_outputs): start_logits/dense,
    end_logits/{dense_0, LayerNorm, dense_1}, answer_class/{dense_0, dense_1 (no bias)}, all
    outside the model/ scope."""
    v, rng, d = _xlnet_encoder(config, seed), _head_rng(seed), config["d_model"]
    v["start_logits/dense/kernel"] = _dense(rng, (d, 1))
    v["start_logits/dense/bias"] = _dense(rng, (1,))
    v["end_logits/dense_0/kernel"] = _dense(rng, (2 * d, d))
    v["end_logits/dense_0/bias"] = _dense(rng, (d,))
    v.update(_layer_norm(rng, "end_logits/LayerNorm", d))
    v["end_logits/dense_1/kernel"] = _dense(rng, (d, 1))
    v["end_logits/dense_1/bias"] = _dense(rng, (1,))
    v["answer_class/dense_0/kernel"] = _dense(rng, (2 * d, d))
    v["answer_class/dense_0/bias"] = _dense(rng, (d,))
    v["answer_class/dense_1/kernel"] = _dense(rng, (d, 1))
    return v


def xlnet_race_variables(config: dict, seed: int) -> dict[str, np.ndarray]:
    """zihangdai/xlnet run_race.py (get_race_loss), --summary_type=last, --use_summ_proj=True:
    the summary projection and logits/dense [d, 1] outside the model/ scope."""
    v, rng, d = _xlnet_encoder(config, seed), _head_rng(seed), config["d_model"]
    v.update(_summary(rng, config, attn=False, proj=True))
    v["logits/dense/kernel"] = _dense(rng, (d, 1))
    v["logits/dense/bias"] = _dense(rng, (1,))
    return v


def save_fine_tuned(variables: dict[str, np.ndarray], prefix: str, optimizer: str,
                    global_step: int, seed: int) -> None:
    """Save as a fine-tuning run's Saver does: the variables, the optimizer state of
    `optimizer` ("adam": tf.train.AdamOptimizer's slots and beta powers, created by the
    optimizer itself; "adam_weight_decay": <var>/adam_m, <var>/adam_v as
    AdamWeightDecayOptimizer creates them) with seeded values, and global_step."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    rng = np.random.default_rng([seed, 2])
    slot_values = lambda shape: (0.01 * rng.normal(size=shape)).astype(np.float32)  # noqa: E731
    graph = tf.Graph()
    with graph.as_default():
        params = [tf1.get_variable(name, initializer=tf.constant(value))
                  for name, value in variables.items()]
        step = tf1.train.get_or_create_global_step()
        assigns = [step.assign(global_step)]
        if optimizer == "adam":
            adam = tf1.train.AdamOptimizer(learning_rate=1e-5)
            adam.apply_gradients([(tf.zeros_like(p), p) for p in params], global_step=step)
            for p in params:  # never run: the slots keep the values assigned here
                m = slot_values(p.shape)
                assigns += [adam.get_slot(p, "m").assign(m),
                            adam.get_slot(p, "v").assign(m * m + 1e-6)]
            beta1_power, beta2_power = adam._get_beta_accumulators()
            assigns += [beta1_power.assign(0.9 ** (global_step + 1)),
                        beta2_power.assign(0.999 ** (global_step + 1))]
        elif optimizer == "adam_weight_decay":
            for p in params:
                name = p.op.name
                m = slot_values(p.shape)
                tf1.get_variable(name + "/adam_m", initializer=tf.constant(m), trainable=False)
                tf1.get_variable(name + "/adam_v", initializer=tf.constant(m * m + 1e-6),
                                 trainable=False)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}")
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(assigns)
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)


FINE_TUNED = {
    # folder: (config file, checkpoint base name, config, variable builder, seed, optimizer,
    #          global_step)
    "bert-tiny-classifier": ("bert_config.json", "bert_model.ckpt", BERT_TINY,
                             bert_classifier_variables, 1101, "adam_weight_decay", 1200),
    "bert-tiny-squad": ("bert_config.json", "bert_model.ckpt", BERT_TINY, bert_squad_variables,
                        1102, "adam_weight_decay", 1300),
    "xlnet-tiny-classifier": ("xlnet_config.json", "xlnet_model.ckpt", XLNET_TINY,
                              xlnet_classifier_variables, 2101, "adam", 1400),
    "xlnet-tiny-regression": ("xlnet_config.json", "xlnet_model.ckpt",
                              {**XLNET_TINY, "untie_r": False}, xlnet_regression_variables, 2102,
                              "adam", 1500),
    "xlnet-tiny-squad": ("xlnet_config.json", "xlnet_model.ckpt", XLNET_TINY,
                         xlnet_squad_variables, 2103, "adam_weight_decay", 1600),
    "xlnet-tiny-race": ("xlnet_config.json", "xlnet_model.ckpt", XLNET_TINY,
                        xlnet_race_variables, 2104, "adam", 1700),
}


MODELS = {
    # folder: (config file, checkpoint base name, config, variable builder, seed)
    "bert-tiny": ("bert_config.json", "bert_model.ckpt", BERT_TINY, bert_variables, 1001),
    "xlnet-tiny": ("xlnet_config.json", "xlnet_model.ckpt", XLNET_TINY, xlnet_variables, 2001),
    "xlnet-tiny-tied": ("xlnet_config.json", "xlnet_model.ckpt", {**XLNET_TINY, "untie_r": False},
                        xlnet_variables, 2002),
}


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "golden", "checkpoints"))
    parser.add_argument("--models", nargs="+", choices=[*MODELS, *FINE_TUNED],
                        help="write only these folders (default: all)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    manifest = {"command": "python tools/make_checkpoints.py", "tensorflow": tf.__version__,
                "numpy": np.__version__, "weight_std": STD, "models": {}}
    manifest_path = os.path.join(args.out, "MANIFEST.json")
    if args.models and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest["models"] = json.load(f)["models"]
    for folder in args.models or [*MODELS, *FINE_TUNED]:
        if folder in MODELS:
            config_name, ckpt_name, config, build, seed = MODELS[folder]
        else:
            config_name, ckpt_name, config, build, seed, optimizer, step = FINE_TUNED[folder]
        out = os.path.join(args.out, folder)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, config_name), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        entry = {"seed": seed}
        if folder in MODELS:
            save_v1_saver(build(config, seed), os.path.join(out, ckpt_name))
        else:
            save_fine_tuned(build(config, seed), os.path.join(out, ckpt_name), optimizer, step, seed)
            entry.update(layout=" ".join(build.__doc__.split(":")[0].split()), optimizer=optimizer,
                         global_step=step)
        files = sorted(os.listdir(out))
        entry["files"] = {name: sha256(os.path.join(out, name)) for name in files}
        manifest["models"][folder] = entry
        print(f"wrote {out}: {', '.join(files)}")
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
