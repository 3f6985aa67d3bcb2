"""`refimpl run`: run a model on a small example, print a per-layer table, check it against the
golden case of the default example, optionally write every tensor and plot attention.

Each model is an adapter: its default checkpoint and example, how to run it into a dict of named
tensors (the trace, then the outputs, in network order), and which tensors are attention
probabilities (for the plot).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from refimpl import golden


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
    """"1 2 3; 4 5 6" (rows separated by ';', ids by spaces or commas) -> (B, L) int64."""
    rows = [r.replace(",", " ").split() for r in text.split(";") if r.strip()]
    if not rows:
        raise ValueError(f"{what}: no ids given")
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{what}: rows have different lengths {[len(r) for r in rows]}")
    try:
        return np.array([[int(x) for x in r] for r in rows], dtype=np.int64)
    except ValueError as e:
        raise ValueError(f"{what}: {e.args[0].split(':', 1)[-1].strip()} is not an integer") from None


def named_tensors(model: str, checkpoint, inputs: dict, options: dict | None = None,
                  dialect: str = "tf", dtype=np.float64) -> dict[str, np.ndarray]:
    """Every named tensor of one forward pass, in network order: the trace, then the outputs.

    checkpoint: a model directory, or a model already loaded with bert.load / xlnet.load (to
    run several forwards without reading the checkpoint again). inputs: the forward's array
    arguments (token_ids, segment_ids, attention_mask, and for XLNet perm_mask, target_mapping,
    mems as a list, inp_q); options: its other keyword arguments."""
    options = dict(options or {})
    is_path = isinstance(checkpoint, (str, os.PathLike))
    trace: dict = {}
    if model == "bert":
        from refimpl import bert
        if options:
            raise ValueError(f"BERT takes no options {sorted(options)} (attn_type and mem_len are XLNet's)")
        out = bert.forward(bert.load(checkpoint) if is_path else checkpoint, inputs["token_ids"], inputs.get("segment_ids"),
                           inputs.get("attention_mask"), dialect=dialect, dtype=dtype, trace=trace)
        outputs = {**trace, "sequence": out.sequence}
        for name in ("pooled", "mlm_logits", "nsp_logits"):
            try:
                outputs[name] = getattr(out, name)
            except ValueError:  # the checkpoint has no such head
                pass
        return outputs
    if model != "xlnet":
        raise ValueError(f"unknown model {model!r}; expected 'xlnet' or 'bert'")
    from refimpl import xlnet
    m = xlnet.load(checkpoint) if is_path else checkpoint
    out = xlnet.forward(m, **inputs, **options, dialect=dialect, dtype=dtype, trace=trace)
    outputs = {**trace, "content": out.content}
    if out.query is not None:
        outputs["query"] = out.query
    for i, mem in enumerate(out.mems or []):
        outputs[f"mems/{i}"] = mem
    outputs["lm_logits"] = xlnet.lm_logits(m, out.content)
    return outputs


def table(tensors: dict[str, np.ndarray], fine: bool = False) -> str:
    """name, shape, mean, std, max |x| of each tensor (top-level names unless `fine`)."""
    rows = [(n, v) for n, v in tensors.items() if fine or "/" not in n or n.startswith("mems/")]
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


def golden_check(model: str, tensors: dict, golden_dir: str) -> str:
    """One line: does this run match the stored golden case of the default example?"""
    folder = os.path.join(golden_dir, "cases", f"{model}-run-default")
    if not os.path.isdir(folder):
        return f"golden: no case {model}-run-default in {golden_dir}"
    expected, tolerances = golden.read_tensors(folder)
    report = golden.compare(expected, tensors, tolerances)
    if report.exit_code == 0:
        worst = max(r.max_abs for r in report.rows)
        return (f"golden: matches case {model}-run-default ({len(report.rows)} tensors, max abs "
                f"error {worst:.2g})")
    first = report.first_divergence
    return f"golden: DOES NOT match case {model}-run-default: first divergence {first.name} ({first.status} {first.detail})"


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
