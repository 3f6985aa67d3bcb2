"""How large is refimpl's emulated 16-bit error next to real 16-bit implementations'?

    python tools/precision_anchors.py                    # every shipped case, every anchor
    python tools/precision_anchors.py --cases xlnet-uni bert-plain --no-transformers

Prints markdown tables of the error vs float64 of each shipped BERT / XLNet golden case, per
tensor: error = compare.budget_error(e, a, s, precision) = max |a - e| / (|e| + s), with the
case's stored scales s (case.json "budgets"), for
  refimpl       emulated bfloat16 and float16 (refimpl/precision.py), run afresh through
                run.compute, as golden.measure_case_budgets runs it;
  transformers  (PyTorch CPU) with torch.bfloat16 / torch.float16: tests/budget_ports.py's
                transformers_tensors, on the cases it can run (budget_ports.transformers_skip
                names the others), leaving out what it computes otherwise by design
                (budget_ports.TRANSFORMERS_OTHERWISE);
  keras         keras-bert / keras-xlnet under Keras mixed precision
                (tf.keras.mixed_precision.set_global_policy("mixed_bfloat16" / "mixed_float16"),
                the model built after setting the policy, weights loaded from the checkpoint by
                the ports' own loaders), on the keras-dialect cases: the anchor code of
                tools/make_golden.py (anchor_bert) and tools/xlnet_golden.py (anchor) builds the
                models and collects their layer outputs under refimpl's names (its pairs are
                captured instead of checked, see `capturing`). Where a Keras model cannot run
                under a policy, the table gives the error message instead. As a supplement,
                "keras floatx float16" sets tf.keras.backend.set_floatx("float16") instead: every
                weight, activation and statistic in float16 (not mixed precision; floatx has no
                bfloat16);
and compares each anchor's median and max over tensors with refimpl's on the same tensors.

Not available here: the original XLNet (zihangdai/xlnet) with use_bfloat16=True, the one
implementation whose bfloat16 path refimpl's emulation describes most directly; the original's
model code is not in this repository (tests/test_heads.py transcribes only its head functions
and masks), and TPU bfloat16 matmuls cannot run on this CPU machine anyway.

Also used by tests/test_budgets_keras.py: `keras_tensors(case_name)` (the Keras ports in float32
under refimpl's names, with verified aliases) and `KERAS_UNEXPOSED`.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import re
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "golden")
for _path in (ROOT, os.path.join(ROOT, "tools"), os.path.join(ROOT, "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from refimpl import compare, golden, run  # noqa: E402

PRECISIONS = ("bfloat16", "float16")
# Keras settings: "float32" (Task 1's check), the two mixed-precision policies, and the
# all-float16 floatx supplement.
KERAS_SETTINGS = {"bfloat16": ["mixed_bfloat16"], "float16": ["mixed_float16", "floatx_float16"]}

# Names of a keras-dialect case the Keras models do not expose, and why (fnmatch patterns).
KERAS_UNEXPOSED = {
    "*/scores": "computed inside keras-multi-head's ScaledDotProductAttention, not a layer output",
    "*/prob": "computed inside the attention layer (keras-multi-head / keras-transformer-xl's "
              "RelativePartialMultiHeadAttention), not a layer output",
    "*/ac": "the content score of keras-transformer-xl's RelativePartialMultiHeadAttention: inside the layer",
    "*/bd": "the position score of RelativePartialMultiHeadAttention: inside the layer",
    "*/ef": "keras-xlnet's segment score: inside RelativePartialMultiHeadAttention",
    "mlm_logits": "keras-bert's MLM head outputs probabilities (MLM-Sim, compared), not logits",
    "nsp_logits": "keras-bert's NSP head outputs probabilities (NSP, compared), not logits",
    "lm_logits": "keras-xlnet outputs probabilities (its Softmax layer, in the training-phase "
                 "model only), not logits",
    "*/lm_logits": "keras-xlnet outputs probabilities, not logits",
    "lm_logits/query": "keras-xlnet outputs probabilities (Softmax), not logits",
    "*/lm_logits/query": "keras-xlnet outputs probabilities (Softmax), not logits",
    "mems/*": "keras-xlnet's Memory layer shows a segment's new memory only when the next "
              "segment reads it (as Memory-i of that segment): none after the last segment",
    "*/mems/*": "keras-xlnet's Memory layer shows a segment's new memory only when the next "
                "segment reads it (as Memory-i of that segment): none after the last segment",
}


def unexposed_reason(name: str) -> str | None:
    return next((why for pattern, why in KERAS_UNEXPOSED.items()
                 if fnmatch.fnmatchcase(name, pattern)), None)


# --- the Keras ports, through the anchor code of tools/ --------------------------------------
@contextlib.contextmanager
def capturing():
    """While inside, the anchors of make_golden.py / xlnet_golden.py hand their (refimpl, keras)
    pairs to the yielded dict ({name: keras value}) instead of checking them against the anchor
    tolerance (make_golden._anchor_report and the name xlnet_golden imported are replaced)."""
    import make_golden
    import xlnet_golden
    captured: dict = {}

    def capture(anchor, pairs, tolerance=None):  # noqa: ARG001 - _anchor_report's signature
        captured.update({name: theirs for name, (_, theirs) in pairs.items()})
        return {"anchor": anchor, "captured": len(pairs)}
    saved = make_golden._anchor_report, xlnet_golden._anchor_report
    make_golden._anchor_report = xlnet_golden._anchor_report = capture
    try:
        yield captured
    finally:
        make_golden._anchor_report, xlnet_golden._anchor_report = saved


@contextlib.contextmanager
def keras_setting(setting: str):
    """Build Keras models under `setting`: "float32" (Keras' defaults, left untouched),
    "mixed_bfloat16" / "mixed_float16" (global mixed-precision policies) or "floatx_float16"
    (backend floatx); after a non-default setting the defaults are put back (floatx float32, no
    global policy). keras-bert models are cached by make_golden per sequence length: emptied on
    both sides, so that every setting builds its own."""
    import make_golden
    make_golden._KERAS_BERT.clear()
    if setting == "float32":
        try:
            yield
        finally:
            make_golden._KERAS_BERT.clear()
        return
    import tensorflow as tf
    try:
        if setting.startswith("mixed_"):
            tf.keras.mixed_precision.set_global_policy(setting)
        elif setting.startswith("floatx_"):
            tf.keras.mixed_precision.set_global_policy(None)  # the policy follows floatx
            tf.keras.backend.set_floatx(setting.split("_", 1)[1])
        else:
            raise ValueError(f"Keras setting {setting!r}")
        yield
    finally:
        tf.keras.backend.set_floatx("float32")
        tf.keras.mixed_precision.set_global_policy(None)
        make_golden._KERAS_BERT.clear()


def keras_case(name: str):
    """make_golden's Case of a shipped case (its anchor settings), or None."""
    import make_golden
    return next((c for c in make_golden.all_cases() if c.name == name), None)


def keras_cannot(name: str) -> str | None:
    """Why the Keras ports cannot run shipped case `name` (None: they can)."""
    case = golden.read_case(os.path.join(GOLDEN, "cases", name))
    if case["dialect"] != "keras":
        return f"dialect {case['dialect']}: the Keras ports compute dialect keras"
    defined = keras_case(name)
    if defined is None:
        return "not defined in tools/make_golden.py (no anchor settings)"
    if defined.model == "xlnet" and defined.keras is None:
        return defined.no_anchor or "keras-xlnet cannot express it"
    if defined.model not in ("bert", "xlnet"):
        return f"model {defined.model}"
    return None


def keras_tensors(name: str, setting: str = "float32") -> dict:
    """The Keras port's tensors for keras-dialect case `name` under refimpl's names (float64
    arrays), built under `setting` (see keras_setting), plus the aliases of `aliases`."""
    import keras_shims
    import make_golden
    import xlnet_golden
    keras_shims.apply()
    case = keras_case(name)
    why = keras_cannot(name)
    if why:
        raise ValueError(f"{name}: {why}")
    folder = os.path.join(GOLDEN, "cases", name)
    inputs = golden.read_npz(os.path.join(folder, golden.INPUTS))
    expected = golden.read_npz(os.path.join(folder, golden.OUTPUTS))
    anchor = xlnet_golden.anchor if case.model == "xlnet" else make_golden.anchor_bert
    with keras_setting(setting), capturing() as captured:
        anchor(case, inputs, expected)
    tensors = {n: np.asarray(v).astype(np.float64) for n, v in captured.items()}
    for alias, source in aliases(expected, tensors):
        tensors[alias] = tensors[source]
    return tensors


def aliases(expected: dict, tensors: dict) -> list[tuple[str, str]]:
    """(golden name, Keras name) pairs where the case stores the same values twice and Keras
    exposes one of them: BERT's sequence (the last Encoder-k-FeedForward-Norm) and pooled
    (NSP-Dense); XLNet's content / query (the last FeedForward-Normal-k[/query]) and the
    memory a segment leaves, segment-s/mems/i (read by segment s + 1 as its Memory-i). Each
    pair is kept only where the golden values of the two names are identical."""
    layers = [int(m.group(1)) for n in expected
              for m in [re.search(r"(?:Encoder-|FeedForward-Normal-)(\d+)", n)] if m]
    last = max(layers, default=0)
    candidates = [("sequence", f"Encoder-{last}-FeedForward-Norm"), ("pooled", "NSP-Dense")]
    prefixes = sorted({n.split("/", 1)[0] + "/" for n in expected if n.startswith("segment-")}) or [""]
    for prefix in prefixes:
        candidates += [(f"{prefix}content", f"{prefix}FeedForward-Normal-{last}"),
                       (f"{prefix}query", f"{prefix}FeedForward-Normal-{last}/query")]
    for name in expected:
        m = re.fullmatch(r"segment-(\d+)/mems/(\d+)", name)
        if m:
            candidates.append((name, f"segment-{int(m.group(1)) + 1}/Memory-{m.group(2)}"))
    return [(alias, source) for alias, source in candidates
            if alias in expected and alias not in tensors and source in tensors and source in expected
            and np.shape(expected[alias]) == np.shape(expected[source])
            and np.array_equal(expected[alias], expected[source])]


def failure_message(error: BaseException) -> str:
    """The innermost error of a Keras failure: exception type, the layer (name and type) it was
    raised in, the library file and line, and the message."""
    text = f"{type(error).__name__}: {error}"
    messages = [m.group(1) for line in text.splitlines()
                if (m := re.match(r"\s*(\w+(?:Error|Exception): .*)", line))
                and "Exception encountered when calling layer" not in line]
    layers = re.findall(r"calling layer ['\"]([^'\"]+)['\"] \(type (\w+)\)", text)
    files = re.findall(r'File "[^"]*site-packages/([^"]+)", line (\d+), in (?!error_handler)', text)
    parts = []
    if layers:
        parts.append(f"in layer {layers[-1][0]} ({layers[-1][1]})")
    if files:
        parts.append(f"at {files[-1][0]}:{files[-1][1]}")
    message = messages[-1] if messages else text.splitlines()[0]
    return (" ".join(parts) + ": " if parts else "") + message.replace("|", "/")


# --- errors vs float64 -------------------------------------------------------------------------
def errors(expected: dict, scales: dict, actual: dict, names, precision: str) -> dict:
    """{name: compare.budget_error} of actual against the float64 golden values."""
    return {n: compare.budget_error(expected[n], actual[n], scales[n], precision) for n in names}


def comparable(expected: dict, scales: dict, actual: dict, skip=()) -> list[str]:
    """The float tensors of the case that are not empty (a memory of length 0), have a scale, are
    in ACTUAL and are not skipped."""
    return [n for n in expected if np.asarray(expected[n]).dtype.kind == "f" and np.size(expected[n])
            and scales.get(n) is not None and n in actual and not any(fnmatch.fnmatchcase(n, p) for p in skip)]


GROUPS = [  # (group, test on the name without its segment prefix), first match wins
    ("attention scores/probs", lambda n: n.rsplit("/", 1)[-1] in ("scores", "prob", "ac", "bd", "ef")),
    ("memory", lambda n: n.startswith(("Memory-", "mems/"))),
    ("embeddings", lambda n: n.startswith(("Embedding-", "Embed-", "Permutation"))),
    ("residual + LayerNorm", lambda n: n.endswith("-Norm") or re.match(
        r"(Attention|FeedForward)-(Residual|Normal)-\d+", n) is not None),
    ("attention output", lambda n: re.fullmatch(
        r"(Encoder-\d+-MultiHeadSelfAttention|Attention-\d+)(/query)?", n) is not None),
    ("feed-forward", lambda n: re.fullmatch(
        r"(Encoder-\d+-FeedForward|FeedForward-\d+)(/query)?", n) is not None),
    ("outputs + heads", lambda n: True),
]


def group_of(name: str) -> str:
    bare = re.sub(r"^segment-\d+/", "", name)
    return next(group for group, test in GROUPS if test(bare))


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if not np.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.2f}"


class Measurement:
    """One anchor on one case at one precision: per tensor, its error and refimpl's."""

    def __init__(self, case: str, anchor: str, precision: str, anchor_errors: dict | None = None,
                 refimpl_errors: dict | None = None, failure: str | None = None):
        self.case, self.anchor, self.precision = case, anchor, precision
        self.anchor_errors, self.refimpl_errors, self.failure = anchor_errors, refimpl_errors, failure

    def stats(self, names=None) -> tuple[float, float, float, float]:
        names = list(self.anchor_errors) if names is None else names
        a = np.array([self.anchor_errors[n] for n in names])
        r = np.array([self.refimpl_errors[n] for n in names])
        return float(np.median(a)), float(a.max()), float(np.median(r)), float(r.max())


def measure_case(name: str, use_transformers: bool, use_keras: bool, log) -> list[Measurement]:
    import budget_ports
    folder = os.path.join(GOLDEN, "cases", name)
    case = golden.read_case(folder)
    inputs = golden.read_npz(os.path.join(folder, golden.INPUTS))
    expected = golden.read_npz(os.path.join(folder, golden.OUTPUTS))
    scales = golden.read_budgets(folder)["scales"]
    checkpoint = os.path.join(GOLDEN, case["checkpoint"])
    refimpl_runs = {p: run.compute(case["model"], checkpoint, inputs, case["options"], case["dialect"], p)
                    for p in PRECISIONS}
    out = []

    def add(anchor: str, precision: str, actual: dict | None, skip=(), failure=None):
        if failure is not None:
            out.append(Measurement(name, anchor, precision, failure=failure))
            return
        names = comparable(expected, scales, actual, skip)
        out.append(Measurement(name, anchor, precision, errors(expected, scales, actual, names, precision),
                               errors(expected, scales, refimpl_runs[precision], names, precision)))

    if use_transformers:
        why = budget_ports.transformers_skip(name)
        skip = (budget_ports.TRANSFORMERS_OTHERWISE[case["model"]] if case["dialect"] == "tf" else []) + \
            budget_ports.TRANSFORMERS_OTHERWISE.get(name, [])
        for precision in PRECISIONS:
            if why:
                add("transformers", precision, None, failure=f"not run: {why}")
                continue
            start = time.perf_counter()
            add("transformers", precision, budget_ports.transformers_tensors(name, precision), skip)
            log(f"{name} transformers {precision}: {time.perf_counter() - start:.1f} s")
    if use_keras and case["dialect"] == "keras":
        why = keras_cannot(name)
        for precision in PRECISIONS:
            for setting in KERAS_SETTINGS[precision]:
                anchor = f"keras {setting.replace('_', ' ')}"
                if why:
                    add(anchor, precision, None, failure=f"not run: {why}")
                    continue
                start = time.perf_counter()
                try:
                    tensors = keras_tensors(name, setting)
                except Exception as e:  # noqa: BLE001 - the failure is the measurement
                    add(anchor, precision, None, failure="FAILED: " + failure_message(e))
                else:
                    add(anchor, precision, tensors)
                log(f"{name} {anchor}: {time.perf_counter() - start:.1f} s")
    return out


# --- the tables ----------------------------------------------------------------------------------
def summary_table(measurements: list[Measurement]) -> str:
    lines = ["| case | anchor | precision | tensors | anchor median | refimpl median | ratio | "
             "anchor max | refimpl max | ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in measurements:
        if m.failure:
            lines.append(f"| {m.case} | {m.anchor} | {m.precision} | - | {m.failure} | | | | | |")
            continue
        if not m.anchor_errors:
            lines.append(f"| {m.case} | {m.anchor} | {m.precision} | 0 | no tensor in common | | | | | |")
            continue
        am, ax, rm, rx = m.stats()
        lines.append(f"| {m.case} | {m.anchor} | {m.precision} | {len(m.anchor_errors)} | {_fmt(am)} | "
                     f"{_fmt(rm)} | {_ratio(am, rm)} | {_fmt(ax)} | {_fmt(rx)} | {_ratio(ax, rx)} |")
    return "\n".join(lines)


def group_table(measurements: list[Measurement]) -> str:
    """Per (case, anchor, group): the max over the group's tensors, both precisions side by side."""
    by_key: dict = {}
    for m in measurements:
        if m.failure or not m.anchor_errors:
            continue
        by_key.setdefault((m.case, m.anchor.replace(" mixed bfloat16", " mixed").replace(
            " mixed float16", " mixed")), {})[m.precision] = m
    lines = ["| case | anchor | group | tensors | bf16 anchor max | bf16 refimpl max | ratio | "
             "f16 anchor max | f16 refimpl max | ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (case, anchor), per_precision in by_key.items():
        names = next(iter(per_precision.values())).anchor_errors
        groups: dict = {}
        for n in names:
            groups.setdefault(group_of(n), []).append(n)
        for group, _ in GROUPS:
            if group not in groups:
                continue
            cells = []
            for precision in PRECISIONS:
                m = per_precision.get(precision)
                members = [n for n in groups[group] if m is not None and n in m.anchor_errors]
                if not members:
                    cells += ["-", "-", "-"]
                    continue
                _, ax, _, rx = m.stats(members)
                cells += [_fmt(ax), _fmt(rx), _ratio(ax, rx)]
            lines.append(f"| {case} | {anchor} | {group} | {len(groups[group])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overall(measurements: list[Measurement]) -> str:
    """Over every (case, anchor, precision) that ran: the spread of the ratios anchor/refimpl."""
    lines = []
    for anchor in sorted({m.anchor for m in measurements}):
        for precision in PRECISIONS:
            ms = [m for m in measurements if m.anchor == anchor and m.precision == precision
                  and not m.failure and m.anchor_errors]
            if not ms:
                continue
            med = [s[0] / s[2] for s in map(Measurement.stats, ms) if s[2] > 0]
            mx = [s[1] / s[3] for s in map(Measurement.stats, ms) if s[3] > 0]
            per_tensor = [m.anchor_errors[n] / m.refimpl_errors[n] for m in ms for n in m.anchor_errors
                          if m.refimpl_errors[n] > 0]
            lines.append(f"- {anchor}, {precision}: {len(ms)} cases; ratio of medians "
                         f"{min(med):.2f} .. {max(med):.2f} (median {np.median(med):.2f}); ratio of maxima "
                         f"{min(mx):.2f} .. {max(mx):.2f} (median {np.median(mx):.2f}); per tensor "
                         f"anchor/refimpl {np.percentile(per_tensor, 5):.2f} (5th pct) .. "
                         f"{np.median(per_tensor):.2f} (median) .. {np.percentile(per_tensor, 95):.2f} "
                         f"(95th pct), max {max(per_tensor):.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", help="shipped case names (default: every BERT / XLNet case)")
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--no-keras", action="store_true")
    args = parser.parse_args(argv)
    import budget_ports
    names = args.cases or budget_ports.shipped_cases()
    started = time.perf_counter()
    log = lambda line: print(f"# {line}", file=sys.stderr, flush=True)  # noqa: E731
    measurements = []
    for name in names:
        measurements += measure_case(name, not args.no_transformers, not args.no_keras, log)
    print("## Error vs float64 per (case, anchor, precision): median and max over tensors\n")
    print("error = compare.budget_error(e, a, s, precision) = max |a - e| / (|e| + s) per tensor, s "
          "the case's stored scale; refimpl = refimpl's emulated run at the same precision, on the "
          "same tensors; ratio = anchor / refimpl.\n")
    print(summary_table(measurements))
    print("\n## Per tensor group: max over the group's tensors\n")
    print(group_table(measurements))
    print("\n## Overall\n")
    print(overall(measurements))
    print(f"\n(run time {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
