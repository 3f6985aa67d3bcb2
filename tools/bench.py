"""Benchmarks: refimpl against TensorFlow and the Keras anchors, measured in one run.

    python tools/bench.py forward [--repeats 5] [--cache DIR] [--quick]
    python tools/bench.py checkpoint [--repeats 5] [--cache DIR]
    python tools/bench.py all

forward: builds BERT-base and XLNet-base checkpoints (official layout, random weights of std
0.02, cached outside the repository), then times, at batch 1, refimpl float32 and float64
against keras-bert / keras-xlnet on TensorFlow-CPU: BERT L=128 and 512, XLNet bi L=128 and
512, XLNet uni L=512 with a 512-token memory. Each contender lives in its own worker process
(model loaded and warmed up once); the workers are called in turn, `repeats` times each, and
the table gives medians, ratios to the Keras model and each worker's peak RSS. It prints the
machine: cores and the BLAS kernel threadpoolctl reports.

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "refimpl-bench")

XLNET_BASE = {"d_head": 64, "d_inner": 3072, "d_model": 768, "ff_activation": "gelu", "n_head": 12,
              "n_layer": 12, "n_token": 32000, "untie_r": True}

BERT_BASE = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}


def _build(cache: str, model: str, config: dict, seed: int) -> str:
    """A base-size checkpoint in the cache, written once: returns its directory.

    Weights of std 0.02 (= initializer_range): activations of a realistic scale. The tiny test
    models use std 0.3 for sharp attention; at base size that underflows softmax into subnormal
    floats, which NumPy computes slowly and TensorFlow flushes to zero."""
    out = os.path.join(cache, f"{model}-base-std0.02")
    if os.path.exists(os.path.join(out, f"{model}_model.ckpt.index")):
        return out
    os.makedirs(out, exist_ok=True)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_checkpoints

    with open(os.path.join(out, f"{model}_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    builder = make_checkpoints.bert_variables if model == "bert" else make_checkpoints.xlnet_variables
    make_checkpoints.save_v1_saver(builder(config, seed=seed, std=0.02),
                                   os.path.join(out, f"{model}_model.ckpt"))
    return out


def build_bert_base(cache: str) -> str:
    return _build(cache, "bert", BERT_BASE, seed=7)


def build_xlnet_base(cache: str) -> str:
    return _build(cache, "xlnet", XLNET_BASE, seed=8)


def _build_in_child(function: str, cache: str) -> str:
    """Build a checkpoint in a child process: ru_maxrss is inherited across fork, so building
    in this process would inflate every worker's peak RSS."""
    code = (f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'tools')!r}); import bench; "
            f"print(bench.{function}({cache!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()[-1]


# --- forward: long-lived workers, called in turn ------------------------------------------------
WORKER = r"""
import os, resource, sys, time
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1"); os.environ.setdefault("TF_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import warnings; warnings.filterwarnings("ignore")
import numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, os.path.join({root!r}, "tests"))
kind, model_dir, length, mem = {kind!r}, {model_dir!r}, {length}, {mem}
rng = np.random.default_rng(0)
{setup}
for _ in range(3):  # warm-up: the allocator settles after a few calls; fills keras-xlnet's memory
    step()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "run":
        t = time.perf_counter(); step(); t = time.perf_counter() - t
        print(t, flush=True)
    else:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
        break
"""

SETUPS = {
    "refimpl-bert": """
from refimpl import bert
m = bert.load(model_dir)
tokens = rng.integers(1, 30000, (1, length))
dtype = np.dtype(kind.split(":")[1])
def step():
    return bert.forward(m, tokens, dtype=dtype).sequence
""",
    "keras-bert": """
import keras_bert
m = keras_bert.load_trained_model_from_checkpoint(os.path.join(model_dir, "bert_config.json"),
        os.path.join(model_dir, "bert_model.ckpt"), training=False, seq_len=length)
x = [rng.integers(1, 30000, (1, length)), np.zeros((1, length), np.int64)]
def step():
    return m.predict_on_batch(x)
""",
    "refimpl-xlnet": """
from refimpl import xlnet
m = xlnet.load(model_dir)
tokens = rng.integers(6, 32000, (1, length))
segments = np.zeros((1, length), np.int64)  # keras-xlnet always computes the segment term too
dtype = np.dtype(kind.split(":")[1])
attn = "uni" if mem else "bi"
mems = None
if mem:  # the memory a previous segment of `mem` tokens leaves behind
    mems = xlnet.forward(m, rng.integers(6, 32000, (1, mem)), np.zeros((1, mem), np.int64),
                         attn_type=attn, mem_len=mem, dtype=dtype).mems
def step():
    return xlnet.forward(m, tokens, segments, mems=mems, attn_type=attn, mem_len=mem or None,
                         dtype=dtype).content
""",
    "keras-xlnet": """
import keras_shims; keras_shims.apply()
import keras_xlnet
m = keras_xlnet.load_trained_model_from_checkpoint(os.path.join(model_dir, "xlnet_config.json"),
        os.path.join(model_dir, "xlnet_model.ckpt"), batch_size=1, memory_len=mem, target_len=length,
        in_train_phase=False, attention_type="uni" if mem else "bi")
x = [rng.integers(6, 32000, (1, length)), np.zeros((1, length), np.int64), np.array([[mem]])]
def step():
    return m.predict_on_batch(x)
""",
}


# glibc returns freed memory to the OS when the top of the heap holds more than
# MALLOC_TRIM_THRESHOLD_ (by default twice a threshold that adapts up to 32 MB), and maps larger
# arrays afresh: NumPy's per-layer temporaries (XLNet-base L=512: up to 25 MB each) are then
# page-faulted in again in every layer. TensorFlow keeps its own memory pool. These two standard
# glibc variables make malloc keep the memory; the "+malloc" contender runs with them.
MALLOC_KEEP = {"MALLOC_TRIM_THRESHOLD_": "2000000000", "MALLOC_MMAP_THRESHOLD_": "1000000000"}


class Worker:
    def __init__(self, kind: str, model_dir: str, length: int, mem: int = 0):
        base = kind.split(":")[0]
        setup = SETUPS[base]
        src = WORKER.format(root=ROOT, kind=kind.replace("+malloc", ""), model_dir=model_dir,
                            length=length, mem=mem, setup=setup)
        env = {**os.environ, **(MALLOC_KEEP if kind.endswith("+malloc") else {})}
        self.proc = subprocess.Popen([sys.executable, "-c", src], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self._expect("ready")

    def _expect(self, word):
        line = self.proc.stdout.readline()
        if line.strip() != word:
            raise RuntimeError(f"worker failed to start (said {line!r})")

    def time(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> float:
        self.proc.stdin.write("rss\n")
        self.proc.stdin.flush()
        rss = float(self.proc.stdout.readline())
        self.proc.wait()
        return rss


def blas_info() -> str:
    code = ("import numpy, threadpoolctl; i = [x for x in threadpoolctl.threadpool_info() if x['user_api'] == 'blas']; "
            "print('; '.join(f\"{x['internal_api']} {x.get('version')} {x.get('architecture')} {x['num_threads']} threads\" for x in i))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return f"{out or 'unknown (install threadpoolctl)'}; env {env or 'OPENBLAS_* unset'}"


def bench_forward(args) -> None:
    bert_dir = _build_in_child("build_bert_base", args.cache)
    xlnet_dir = _build_in_child("build_xlnet_base", args.cache)
    configs = [("BERT-base", "bert", bert_dir, 128, 0), ("BERT-base", "bert", bert_dir, 512, 0),
               ("XLNet-base bi", "xlnet", xlnet_dir, 128, 0), ("XLNet-base bi", "xlnet", xlnet_dir, 512, 0),
               ("XLNet-base uni mem 512", "xlnet", xlnet_dir, 512, 512)]
    if args.quick:
        configs = [c for c in configs if c[3] == 128]
    if args.filter:
        configs = [c for c in configs if args.filter.lower() in f"{c[0]} {c[3]}".lower()]
    print(f"machine: {os.cpu_count()} cores; BLAS: {blas_info()}")
    print(f"forward, batch 1, median of {args.repeats} calls per contender, contenders called in turn")
    print(f"{'model':<24} {'L':>4} {'contender':<24} {'median s':>9} {'vs keras':>9} {'peak RSS MiB':>13}")
    print(f"('+malloc': run with {' '.join(f'{k}={v}' for k, v in MALLOC_KEEP.items())})")
    for title, family, directory, length, mem in configs:
        kinds = [f"refimpl-{family}:float32", f"refimpl-{family}:float32+malloc",
                 f"refimpl-{family}:float64", f"refimpl-{family}:float64+malloc", f"keras-{family}"]
        workers = {kind: Worker(kind, directory, length, mem) for kind in kinds}
        times = {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            for kind, worker in workers.items():
                times[kind].append(worker.time())
        rss = {kind: worker.close() for kind, worker in workers.items()}
        keras_median = statistics.median(times[f"keras-{family}"])
        for kind in kinds:
            median = statistics.median(times[kind])
            label = kind.replace(f"refimpl-{family}:", "refimpl ")
            print(f"{title:<24} {length:>4} {label:<24} {median:9.3f} {median / keras_median:9.2f} {rss[kind]:13.0f}")


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
    directory = _build_in_child("build_bert_base", args.cache)
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
    fw = sub.add_parser("forward", help="forward passes vs keras-bert / keras-xlnet")
    fw.add_argument("--repeats", type=int, default=5)
    fw.add_argument("--cache", default=DEFAULT_CACHE)
    fw.add_argument("--quick", action="store_true", help="L=128 only")
    fw.add_argument("--filter", help='only configurations whose "model L" contains this, e.g. "bi 512"')
    fw.set_defaults(func=bench_forward)
    both = sub.add_parser("all", help="forward, then checkpoint")
    both.add_argument("--repeats", type=int, default=5)
    both.add_argument("--cache", default=DEFAULT_CACHE)
    both.set_defaults(func=lambda a: (bench_forward(argparse.Namespace(**vars(a), quick=False, filter=None)), bench_checkpoint(a)))
    ck = sub.add_parser("checkpoint", help="checkpoint read+verify vs TensorFlow's reader")
    ck.add_argument("--repeats", type=int, default=5)
    ck.add_argument("--cache", default=DEFAULT_CACHE)
    ck.set_defaults(func=bench_checkpoint)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
