"""Running the models into named tensors (the one place `refimpl run`, golden cases and tools
use), the per-layer table and the attention plots of `refimpl run`.

`compute` runs one forward, or a memory run over several segments, into a dict of named
tensors in network order: the trace (recorded where each value is computed), then the outputs.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from refimpl import precision


@dataclasses.dataclass(frozen=True)
class Example:
    tokens: str
    segments: str


DEFAULTS = {
    # A fixed example for each model (the golden cases <model>-run-default store its tensors).
    "xlnet": Example(tokens="17 25 33 4 58 61 9 12 40 3", segments="0 0 0 0 0 1 1 1 1 1"),
    "bert": Example(tokens="2 17 25 33 4 3 58 61 9 3", segments="0 0 0 0 0 0 1 1 1 1"),
}
DEFAULT_CHECKPOINTS = {"xlnet": "checkpoints/xlnet-tiny", "bert": "checkpoints/bert-tiny"}


def parse_ids(text: str, what: str) -> np.ndarray:
    """"1 2 3; 4 5 6" (rows separated by ';', ids by spaces or commas) -> (B, L) int64.
    A ValueError naming the bad value otherwise (empty text included)."""
    rows = [r.replace(",", " ").split() for r in text.split(";") if r.strip()]
    if not rows:
        raise ValueError(f"{what}: no ids given (expected e.g. \"17 25 33\", rows separated by ';')")
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{what}: rows have different lengths {[len(r) for r in rows]}")
    values = []
    for row in rows:
        for x in row:
            try:
                value = int(x)
            except ValueError:
                raise ValueError(f"{what}: {x!r} is not an integer") from None
            if not -2**63 <= value < 2**63:
                raise ValueError(f"{what}: {x} does not fit in a 64-bit integer")
            values.append(value)
    return np.array(values, dtype=np.int64).reshape(len(rows), len(rows[0]))


HEAD_INPUTS = ("p_mask", "cls_index", "start_positions")  # XLNet SQuAD head arrays


def named_tensors(model: str, checkpoint, inputs: dict, options: dict | None = None,
                  dialect: str = "tf", dtype=np.float64) -> dict[str, np.ndarray]:
    """Every named tensor of one forward pass, in network order: the trace, then the outputs,
    then a fine-tuning head's tensors when options["head"] names one ("<head>/<name>").

    checkpoint: a model directory, or a model already loaded with bert.load / xlnet.load (to
    run several forwards without reading the checkpoint again). inputs: the forward's array
    arguments (token_ids, segment_ids, attention_mask, and for XLNet perm_mask, target_mapping,
    mems as a list, inp_q; the SQuAD head's p_mask, cls_index, start_positions); options: the
    forward's other keyword arguments, and head with its options (XLNet: task, summary_type,
    use_summ_proj, n_choice, start_n_top, end_n_top). dtype: float64, float32, or "bfloat16" /
    "float16" emulated (refimpl/precision.py), the heads included."""
    with precision.storage(precision.resolve(dtype)[1]):
        return _named_tensors(model, checkpoint, inputs, options, dialect, dtype)


def _named_tensors(model, checkpoint, inputs, options, dialect, dtype) -> dict[str, np.ndarray]:
    options, inputs = dict(options or {}), dict(inputs)
    head = options.pop("head", None)
    is_path = isinstance(checkpoint, (str, os.PathLike))
    trace: dict = {}
    if model == "bert":
        from refimpl import bert
        if options:
            raise ValueError(f"BERT takes no options {sorted(options)} (attn_type and mem_len are XLNet's)")
        b = bert.load(checkpoint) if is_path else checkpoint
        out = bert.forward(b, inputs["token_ids"], inputs.get("segment_ids"),
                           inputs.get("attention_mask"), dialect=dialect, dtype=dtype, trace=trace)
        outputs = {**trace, "sequence": out.sequence}
        for name in ("pooled", "mlm_logits", "nsp_logits"):
            try:
                outputs[name] = getattr(out, name)
            except ValueError:  # the checkpoint has no such head
                pass
        if head is not None:
            outputs.update({f"{head}/{k}": v for k, v in bert.run_head(b, out, head).items()})
        return outputs
    if model != "xlnet":
        raise ValueError(f"unknown model {model!r}; expected 'xlnet' or 'bert'")
    from refimpl import xlnet
    m = xlnet.load(checkpoint) if is_path else checkpoint
    head_options = {k: options.pop(k) for k in xlnet.heads.HEAD_OPTIONS if k in options}
    head_inputs = {k: inputs.pop(k) for k in HEAD_INPUTS if k in inputs}
    if head is None and (head_options or head_inputs):
        raise ValueError(f"{', '.join([*head_options, *head_inputs])}: options of a head; give head=")
    out = xlnet.forward(m, **inputs, **options, dialect=dialect, dtype=dtype, trace=trace)
    outputs = {**trace, "content": out.content}
    if out.query is not None:
        outputs["query"] = out.query
    for i, mem in enumerate(out.mems or []):
        outputs.setdefault(f"mems/{i}", mem)  # traced where computed, at the start of layer i + 1
    if m.lm_loss is not None:  # fine-tuned checkpoints have no LM head
        outputs["lm_logits"] = xlnet.lm_logits(m, out.content)
        if out.query is not None:  # the prediction of the query stream (transformers' logits)
            outputs["lm_logits/query"] = xlnet.lm_logits(m, out.query)
    if head is not None:
        outputs.update({f"{head}/{k}": v for k, v in xlnet.run_head(
            m, out, head, **head_options, **head_inputs, attention_mask=inputs.get("attention_mask"),
            dialect=dialect).items()})
    return outputs


def load(model: str, checkpoint):
    """bert.load / xlnet.load by model name."""
    if model == "bert":
        from refimpl import bert
        return bert.load(checkpoint)
    if model == "xlnet":
        from refimpl import xlnet
        return xlnet.load(checkpoint)
    raise ValueError(f"unknown model {model!r}; expected 'xlnet' or 'bert'")


def compute(model: str, checkpoint, inputs: dict, options: dict | None = None, dialect: str = "tf",
            dtype=np.float64) -> dict[str, np.ndarray]:
    """named_tensors, or with options["segments"] = S (XLNet) a memory run over S consecutive
    segments: every input has a leading segment axis (S, batch, length), segment s takes the
    mems of segment s - 1 (pass mem_len to keep them), and names get a "segment-<s>/" prefix."""
    options = dict(options or {})
    segments = options.pop("segments", None)
    if segments is None:
        return named_tensors(model, checkpoint, inputs, options, dialect, dtype)
    if model != "xlnet":
        raise ValueError(f"option segments: memory runs over segments are XLNet's, not {model}'s")
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ValueError(f"option segments {segments!r}: expected a positive integer")
    for name, value in inputs.items():
        if value is not None and np.shape(value)[:1] != (segments,):
            raise ValueError(f"input {name} has shape {np.shape(value)}: with segments={segments} "
                             f"every input needs a leading segment axis of {segments}")
    m = load(model, checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    outputs, mems = {}, None
    for s in range(segments):
        step = {name: None if value is None else value[s] for name, value in inputs.items()}
        tensors = named_tensors(model, m, {**step, "mems": mems}, options, dialect, dtype)
        mems = [tensors[name] for name in tensors if name.startswith("mems/")] or None
        outputs.update({f"segment-{s}/{name}": value for name, value in tensors.items()})
    return outputs


def table(tensors: dict[str, np.ndarray], fine: bool = False) -> str:
    """name, shape, mean, std, max |x| of each tensor (top-level names unless `fine`)."""
    finer = ("/ac", "/bd", "/ef", "/prob", "/scores")  # attention internals: shown with `fine`
    rows = [(n, v) for n, v in tensors.items() if fine or not n.endswith(finer)]
    width = max(len(n) for n, _ in rows)
    lines = [f"{'name':<{width}}  {'shape':<16} {'mean':>10} {'std':>10} {'max |x|':>10}"]
    for name, v in rows:
        x = np.asarray(v, dtype=np.float64)
        stats = (x.mean(), x.std(), np.abs(x).max()) if x.size else (0.0, 0.0, 0.0)
        lines.append(f"{name:<{width}}  {str(tuple(v.shape)):<16} {stats[0]:10.4g} {stats[1]:10.4g} {stats[2]:10.4g}")
    hidden = len(tensors) - len(rows)
    if hidden:
        lines.append(f"# {hidden} finer tensors (scores, probabilities, ...) not shown; --out writes all {len(tensors)}")
    return "\n".join(lines)


# --- attention plots -----------------------------------------------------------------------
def attention_maps(tensors: dict) -> list[tuple[str, np.ndarray]]:
    """(title, (heads, queries, keys) probabilities of batch item 0) for each layer and stream."""
    maps = []
    for name, value in tensors.items():
        if name.endswith("/prob") and value.ndim == 4:
            maps.append((name[:-len("/prob")], np.asarray(value[0], dtype=np.float64)))
    return maps


def plot_attention(tensors: dict, path: str, title: str, token_labels: list[str]) -> None:
    """One row per layer (and stream), one column per head: heatmaps of the attention
    probabilities of batch item 0, keys on x, queries on y. Entries that are exactly 0 (masked
    keys: padding, causal or permutation masks) are drawn light gray."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot-attention needs matplotlib: pip install 'refimpl[plot]'") from None
    maps = attention_maps(tensors)
    if not maps:
        raise ValueError("no attention probabilities in this run to plot")
    heads = maps[0][1].shape[0]
    fig, axes = plt.subplots(len(maps), heads, figsize=(2.3 * heads + 1.2, 2.3 * len(maps) + 0.8),
                             squeeze=False, constrained_layout=True)
    image = None
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#d9d9d9")
    for row, (name, probs) in enumerate(maps):
        for head in range(heads):
            ax = axes[row][head]
            shown = np.ma.masked_where(probs[head] == 0.0, probs[head])
            image = ax.imshow(shown, vmin=0.0, vmax=1.0, cmap=cmap, interpolation="nearest")
            n_q, n_k = probs[head].shape
            ax.set_title(f"{name} head {head + 1}", fontsize=7)
            # keys: memory first (m0, m1, ...), then the segment's tokens
            keys = [f"m{j}" for j in range(n_k - len(token_labels))] + token_labels[-n_k:]
            ax.set_xticks(range(n_k))
            ax.set_xticklabels(keys, fontsize=5, rotation=90)
            ax.set_yticks(range(n_q))
            ax.set_yticklabels(token_labels[:n_q] if n_q <= len(token_labels) else range(n_q), fontsize=5)
            if head == 0:
                ax.set_ylabel("query", fontsize=7)
            if row == len(maps) - 1:
                ax.set_xlabel("key", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention probability")
    fig.suptitle(f"{title}; gray = masked (probability exactly 0)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
