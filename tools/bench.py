"""Benchmarks: refimpl against TensorFlow and the Keras anchors, measured in one run.

    python tools/bench.py checkpoint [--repeats 5] [--cache DIR]

checkpoint: builds a BERT-base-sized checkpoint (official layout, random weights, ~440 MB) in a
cache folder outside the repository (default ~/.cache/refimpl-bench, never committed), then
reads and verifies every tensor with refimpl (C crc32c when installed, and the NumPy fallback)
and with TensorFlow's reader (`tf.train.load_checkpoint(...).get_tensor` for every variable,
which checks each tensor's crc32c too). Each measurement runs in a fresh subprocess, the
contenders alternate, and the table gives medians, ratios to TensorFlow and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "refimpl-bench")

BERT_BASE = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}


def build_bert_base(cache: str) -> str:
    """The BERT-base checkpoint in the cache (written once): returns its directory."""
    out = os.path.join(cache, "bert-base-std0.02")
    if os.path.exists(os.path.join(out, "bert_model.ckpt.index")):
        return out
    os.makedirs(out, exist_ok=True)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_checkpoints

    with open(os.path.join(out, "bert_config.json"), "w") as f:
        json.dump(BERT_BASE, f, indent=2)
    # std 0.02 = initializer_range: activations of a realistic scale. (The tiny test models use
    # std 0.3 for sharp attention; at base size that underflows softmax into subnormal floats,
    # which NumPy computes slowly and TensorFlow flushes to zero.)
    variables = make_checkpoints.bert_variables(BERT_BASE, seed=7, std=0.02)
    make_checkpoints.save_v1_saver(variables, os.path.join(out, "bert_model.ckpt"))
    return out


# Each contender: code run in a fresh interpreter; prints seconds and peak RSS (MiB).
READERS = {
    "refimpl (C crc32c)": """
from refimpl import checkpoint, crc32c
assert crc32c.HAVE_C, "google-crc32c is not installed"
t = time.perf_counter(); v = checkpoint.load_checkpoint(PATH, verify=True); t = time.perf_counter() - t
""",
    "refimpl (NumPy crc32c)": """
from refimpl import checkpoint, crc32c
crc32c.HAVE_C = False
t = time.perf_counter(); v = checkpoint.load_checkpoint(PATH, verify=True); t = time.perf_counter() - t
""",
    "refimpl (verify=False)": """
from refimpl import checkpoint
t = time.perf_counter(); v = checkpoint.load_checkpoint(PATH, verify=False); t = time.perf_counter() - t
""",
    "tf.train.load_checkpoint": """
import tensorflow as tf
t = time.perf_counter()
r = tf.train.load_checkpoint(PATH)
v = {n: r.get_tensor(n) for n in r.get_variable_to_shape_map()}
t = time.perf_counter() - t
""",
}

HARNESS = """
import os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PATH = {path!r}
{code}
n = sum(x.nbytes for x in v.values())
print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, n)
"""


def run_reader(code: str, path: str) -> tuple[float, float, int]:
    src = HARNESS.format(path=path, code=code)
    result = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    seconds, rss, nbytes = result.stdout.split()[-3:]
    return float(seconds), float(rss), int(nbytes)


def bench_checkpoint(args) -> None:
    # Built in a child process: ru_maxrss is inherited across fork, so building here would
    # inflate every reader's peak RSS.
    code = f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'tools')!r}); import bench; print(bench.build_bert_base({args.cache!r}))"
    directory = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout.split()[-1]
    path = os.path.join(directory, "bert_model.ckpt")
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    times = {name: [] for name in READERS}
    rss = {name: 0.0 for name in READERS}
    for _ in range(args.repeats):  # alternate the contenders
        for name, code in READERS.items():
            seconds, peak, nbytes = run_reader(code, path)
            times[name].append(seconds)
            rss[name] = max(rss[name], peak)
    tf_median = statistics.median(times["tf.train.load_checkpoint"])
    print(f"checkpoint: {path} ({size / 1e6:.0f} MB on disk, {nbytes / 1e6:.0f} MB of tensors), "
          f"{args.repeats} runs each, alternating, fresh process per run; {os.cpu_count()} cores")
    print(f"{'reader':<26} {'median s':>9} {'min s':>7} {'vs TF':>6} {'MB/s':>6} {'peak RSS MiB':>13}")
    for name in READERS:
        median = statistics.median(times[name])
        print(f"{name:<26} {median:9.3f} {min(times[name]):7.3f} {median / tf_median:6.2f} "
              f"{nbytes / 1e6 / median:6.0f} {rss[name]:13.0f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ck = sub.add_parser("checkpoint", help="checkpoint read+verify vs TensorFlow's reader")
    ck.add_argument("--repeats", type=int, default=5)
    ck.add_argument("--cache", default=DEFAULT_CACHE)
    ck.set_defaults(func=bench_checkpoint)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
