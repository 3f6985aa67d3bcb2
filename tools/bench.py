"""Benchmarks: refimpl against TensorFlow, the Keras anchors and transformers, measured in one run.

    python tools/bench.py forward [--repeats 5] [--cache DIR] [--quick] [--filter TEXT]
    python tools/bench.py scaling [--models bert xlnet] [--batch 1 8] [--length 128 512]
                                  [--contenders refimpl-float32 refimpl-float64 keras torch]
                                  [--repeats 5] [--quick] [--profile] [--cache DIR]
    python tools/bench.py profile [--models bert xlnet] [--batch 1] [--length 128]
                                  [--dtype float32] [--top 15] [--cache DIR]
    python tools/bench.py checkpoint [--repeats 5] [--cache DIR]
    python tools/bench.py all          (forward, scaling, checkpoint)

Every mode first prints the machine: cores, the BLAS kernel threadpoolctl reports for NumPy
(OpenBLAS' DYNAMIC_ARCH core, e.g. Haswell) and whether OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are
set (both change which kernel and blocking OpenBLAS uses).

forward: builds BERT-base and XLNet-base checkpoints (official layout, random weights of std
0.02, cached outside the repository), then times, at batch 1, refimpl float32 and float64
(each also with glibc malloc told to keep freed memory, "+malloc", and in dialect "hf", whose
GELU is the exact erf) against keras-bert / keras-xlnet on TensorFlow-CPU: BERT L=128 and 512,
XLNet bi L=128 and 512, XLNet uni L=512 with a 512-token memory. Ratios are given both as
ratios of medians and paired (the median of the ratios within each round of calls, steadier
when the machine's speed drifts); "hf/tf" is dialect hf's paired ratio to dialect tf.

scaling: batch scaling at B = 1 and 8, L = 128 and 512, for BERT-base and XLNet-base (bi), with
four contenders: refimpl float32, refimpl float64 (dialect "tf": tanh GELU), the Keras port
(keras-bert / keras-xlnet on TensorFlow-CPU, float32) and transformers (BertModel / XLNetModel
on PyTorch-CPU, float32, loaded from a folder that refimpl.convert writes from the same cached
checkpoint with dialect "tf", i.e. hidden_act / ff_activation "gelu_new"). The table gives per
configuration the median seconds per forward, milliseconds per sequence (median / B), the
ratio to the Keras port and each worker's peak RSS; below it, the thread pools (threadpoolctl)
and framework threads each worker reported. --quick is B=1, L=128 and 3 repeats; --models,
--batch, --length and --contenders choose a subset. --profile adds `profile` for refimpl
float32 at each chosen size.

In forward and scaling each contender lives in its own worker process (model loaded and warmed
up three times); the workers of one configuration are called in turn, `repeats` times each,
with a PAUSE of 0.3 s between calls (OpenBLAS', TensorFlow's and PyTorch's threads spin for a
while after a call and would slow the next contender down); medians are reported, and each
worker's peak RSS (ru_maxrss) when it ends.

profile: where one refimpl forward's time goes, in a fresh process per configuration (XLNet:
bi, segment ids 0, no memory, as in scaling). After two warm-up calls:
- the median wall time and minor page faults of `repeats` forwards;
- cProfile over one forward. Each function's self time, plus the self time of the NumPy helpers
  it called (x.max -> _amax, np.einsum -> einsum_path, ...; a helper's time is shared among its
  callers in proportion to its time under each), is charged to one category: matmul
  (ops.dense, ops.attention_scores / attention_values, np.einsum: XLNet's projections),
  softmax, layer_norm, activation (GELU), rel_shift, masks and positions, embedding, weight
  cast, precision emulation, and "model code": the lines of the model functions themselves
  (residual adds, scaling, XLNet's q + r_w_bias, the copy that reads rel_shift's strided view).
  An operator (`@`, `+`, a ufunc) counts where it is written: ops.dense's bias add is matmul.
  The table lists the categories, then the functions that took most;
- the BLAS floor: the same matmul shapes (matmul_shapes), each timed alone with np.matmul into
  preallocated contiguous arrays, against the matmul category;
- the cost of fresh memory: glibc malloc is told in-process (mallopt) what MALLOC_KEEP tells it,
  and the forward is timed again: the page faults and seconds that keeping freed memory saves.

checkpoint: builds a BERT-base-sized checkpoint (official layout, random weights, ~440 MB) in a
cache folder outside the repository (default ~/.cache/refimpl-bench, never committed), then
reads and verifies every tensor with refimpl (C crc32c when installed, and the NumPy fallback)
and with TensorFlow's reader (`tf.train.load_checkpoint(...).get_tensor` for every variable,
which checks each tensor's crc32c too). Each measurement runs in a fresh subprocess, the
contenders alternate, and the table gives medians, ratios to TensorFlow and peak RSS.
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "refimpl-bench")
PAUSE = 0.3  # seconds between two contenders' calls: the previous one's threads stop spinning
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

XLNET_BASE = {"d_head": 64, "d_inner": 3072, "d_model": 768, "ff_activation": "gelu", "n_head": 12,
              "n_layer": 12, "n_token": 32000, "untie_r": True}

BERT_BASE = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}

# token ids the workers draw, [low, high): below the base vocabularies, above XLNet's specials
TOKEN_RANGE = {"bert": (1, 30000), "xlnet": (6, 32000)}
TITLES = {"bert": "BERT-base", "xlnet": "XLNet-base bi"}


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


def _build_transformers(official: str) -> str:
    """The transformers folder (config.json + model.safetensors) beside an official checkpoint
    folder, converted once by refimpl.convert with dialect "tf" (GELU "gelu_new", the tanh form
    refimpl's "tf" computes): returns its directory."""
    out = official + "-hf"
    if not os.path.exists(os.path.join(out, "config.json")):  # written after the weights
        sys.path.insert(0, ROOT)
        from refimpl import convert

        convert.to_transformers(official, out, dialect="tf")
    return out


def build_bert_transformers(cache: str) -> str:
    return _build_transformers(build_bert_base(cache))


def build_xlnet_transformers(cache: str) -> str:
    return _build_transformers(build_xlnet_base(cache))


def _build_in_child(function: str, cache: str) -> str:
    """Build a checkpoint in a child process: ru_maxrss is inherited across fork, so building
    in this process would inflate every worker's peak RSS."""
    code = (f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'tools')!r}); import bench; "
            f"print(bench.{function}({cache!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()[-1]


# --- the machine: BLAS kernel and OpenBLAS settings -------------------------------------------
def _pool_text(pool: dict) -> str:
    """One threadpoolctl entry as text: "openblas 0.3.31 Haswell 2 threads"."""
    parts = [pool.get("internal_api"), pool.get("version"), pool.get("architecture"),
             f"{pool.get('num_threads')} threads"]
    return " ".join(str(p) for p in parts if p)


def openblas_env() -> str:
    """Whether OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set (the workers inherit them)."""
    return ", ".join(f"{k}={os.environ[k]}" if k in os.environ else f"{k} unset" for k in OPENBLAS_ENV)


def blas_info() -> str:
    """The BLAS NumPy loads in a fresh interpreter, as threadpoolctl reports it (its kernel:
    OpenBLAS' core for this CPU), and the OpenBLAS variables."""
    code = ("import sys, numpy, threadpoolctl; sys.path.insert(0, sys.argv[1]); import bench; "
            "print('; '.join(bench._pool_text(x) for x in threadpoolctl.threadpool_info() "
            "if x['user_api'] == 'blas'))")
    out = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "tools")],
                         capture_output=True, text=True).stdout.strip()
    return f"{out or 'unknown (install threadpoolctl)'}; {openblas_env()}"


def print_machine() -> None:
    print(f"machine: {os.cpu_count()} cores; BLAS: {blas_info()}", flush=True)


# --- forward and scaling: long-lived workers, called in turn ------------------------------------
WORKER = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1"); os.environ.setdefault("TF_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import warnings; warnings.filterwarnings("ignore")
import numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, os.path.join({root!r}, "tests"))
sys.path.insert(0, os.path.join({root!r}, "tools"))
kind, model_dir, length, mem, batch = {kind!r}, {model_dir!r}, {length}, {mem}, {batch}
low, high = {tokens!r}
rng = np.random.default_rng(0)
INFO = ""  # what the setup reports about its framework (threads, attention kernel)
{setup}
for _ in range({warmup}):  # warm-up: the allocator settles after a few calls; fills keras-xlnet's memory
    step()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "run":
        t = time.perf_counter(); step(); t = time.perf_counter() - t
        print(t, flush=True)
    else:
        try:
            import threadpoolctl, bench
            pools = [bench._pool_text(x) for x in threadpoolctl.threadpool_info()]
        except ImportError:
            pools = ["threadpoolctl not installed"]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({{"rss_mib": rss, "pools": pools, "info": INFO}}), flush=True)
        break
"""

SETUPS = {
    "refimpl-bert": """
from refimpl import bert
dtype = np.dtype(kind.split(":")[1])
m = bert.load(model_dir, dtype=dtype)  # weights read in the forward's dtype: no second copy
tokens = rng.integers(low, high, (batch, length))
dialect = (kind.split(":") + ["tf"])[2]
def step():
    return bert.forward(m, tokens, dtype=dtype, dialect=dialect).sequence
""",
    "keras-bert": """
import keras_bert
import tensorflow as tf
m = keras_bert.load_trained_model_from_checkpoint(os.path.join(model_dir, "bert_config.json"),
        os.path.join(model_dir, "bert_model.ckpt"), training=False, seq_len=length)
x = [rng.integers(low, high, (batch, length)), np.zeros((batch, length), np.int64)]
INFO = f"tensorflow {tf.__version__}"
def step():
    return m.predict_on_batch(x)
""",
    "torch-bert": """
import torch, transformers
transformers.logging.set_verbosity_error(); transformers.logging.disable_progress_bar()
m = transformers.BertModel.from_pretrained(model_dir).eval()
tokens = torch.from_numpy(rng.integers(low, high, (batch, length)))
segments = torch.zeros_like(tokens)
INFO = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"attention {m.config._attn_implementation}, {m.config.hidden_act}")
def step():
    with torch.inference_mode():
        return m(input_ids=tokens, token_type_ids=segments).last_hidden_state
""",
    "refimpl-xlnet": """
from refimpl import xlnet
dtype = np.dtype(kind.split(":")[1])
m = xlnet.load(model_dir, dtype=dtype)  # weights read in the forward's dtype: no second copy
tokens = rng.integers(low, high, (batch, length))
segments = np.zeros((batch, length), np.int64)  # keras-xlnet always computes the segment term too
dialect = (kind.split(":") + ["tf"])[2]
attn = "uni" if mem else "bi"
mems = None
if mem:  # the memory a previous segment of `mem` tokens leaves behind
    mems = xlnet.forward(m, rng.integers(low, high, (batch, mem)), np.zeros((batch, mem), np.int64),
                         attn_type=attn, mem_len=mem, dtype=dtype).mems
def step():
    return xlnet.forward(m, tokens, segments, mems=mems, attn_type=attn, mem_len=mem or None,
                         dtype=dtype, dialect=dialect).content
""",
    "keras-xlnet": """
import keras_shims; keras_shims.apply()
import keras_xlnet
import tensorflow as tf
m = keras_xlnet.load_trained_model_from_checkpoint(os.path.join(model_dir, "xlnet_config.json"),
        os.path.join(model_dir, "xlnet_model.ckpt"), batch_size=batch, memory_len=mem,
        target_len=length, in_train_phase=False, attention_type="uni" if mem else "bi")
x = [rng.integers(low, high, (batch, length)), np.zeros((batch, length), np.int64),
     np.full((batch, 1), mem)]
INFO = f"tensorflow {tf.__version__}"
def step():
    return m.predict_on_batch(x)
""",
    "torch-xlnet": """
import torch, transformers
transformers.logging.set_verbosity_error(); transformers.logging.disable_progress_bar()
m = transformers.XLNetModel.from_pretrained(model_dir).eval()  # attn_type "bi", no memory
assert not mem, "the transformers worker runs without memory"
tokens = torch.from_numpy(rng.integers(low, high, (batch, length)))
segments = torch.zeros_like(tokens)  # the segment term, as the other contenders compute it
INFO = f"torch {torch.__version__}, {torch.get_num_threads()} threads, {m.config.ff_activation}"
def step():
    with torch.inference_mode():
        return m(input_ids=tokens, token_type_ids=segments).last_hidden_state
""",
}


# glibc returns freed memory to the OS when the top of the heap holds more than
# MALLOC_TRIM_THRESHOLD_ (by default twice a threshold that adapts up to 32 MB), and maps larger
# arrays afresh: NumPy's temporaries of a few MB are then page-faulted in again in every layer.
# refimpl keeps the biggest in a per-forward workspace (ops.workspace); TensorFlow keeps its own
# memory pool. These two standard glibc variables make malloc keep all of it; the "+malloc"
# contender runs with them and shows what the remaining fresh memory costs.
MALLOC_KEEP = {"MALLOC_TRIM_THRESHOLD_": "2000000000", "MALLOC_MMAP_THRESHOLD_": "1000000000"}


class Worker:
    """A contender in its own process: `kind` is a SETUPS key, for refimpl with ":float32" or
    ":float64", optionally ":hf" or ":keras" (the dialect; default "tf") and "+malloc" (run
    with MALLOC_KEEP). The model is loaded and warmed
    up `warmup` times before the constructor returns."""

    def __init__(self, kind: str, model_dir: str, length: int, mem: int = 0, batch: int = 1,
                 tokens: tuple[int, int] | None = None, warmup: int = 3):
        base = kind.split(":")[0]
        family = base.split("-")[1]
        src = WORKER.format(root=ROOT, kind=kind.replace("+malloc", ""), model_dir=model_dir,
                            length=length, mem=mem, batch=batch, warmup=warmup,
                            tokens=tuple(tokens or TOKEN_RANGE[family]), setup=SETUPS[base])
        env = {**os.environ, **(MALLOC_KEEP if kind.endswith("+malloc") else {})}
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, "-c", src], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self._expect("ready")

    def _expect(self, word):
        line = self.proc.stdout.readline()
        if line.strip() != word:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"worker {self.kind} failed to start (said {line!r})")

    def time(self) -> float:
        """Seconds of one call of the worker's step (one forward)."""
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> dict:
        """End the worker: {"rss_mib": its peak RSS, "pools": threadpoolctl's thread pools as
        text, "info": what its setup reported (framework version, threads)}."""
        self.proc.stdin.write("report\n")
        self.proc.stdin.flush()
        report = json.loads(self.proc.stdout.readline())
        self.proc.wait()
        return report


def call_in_turn(workers: dict, repeats: int, pause: float = PAUSE) -> dict[str, list[float]]:
    """Call every worker once per round, `repeats` rounds, `pause` seconds between two calls:
    {kind: [seconds, ...]}."""
    times = {kind: [] for kind in workers}
    for _ in range(repeats):
        for kind, worker in workers.items():
            times[kind].append(worker.time())
            time.sleep(pause)
    return times


def paired_ratio(times: dict[str, list[float]], kind: str, reference: str) -> float:
    """The median over rounds of kind's time / reference's time in the same round. Calls of one
    round are a few seconds apart; this machine's speed drifts over minutes (keras-bert at
    L=512: 1.0 to 2.6 s in different runs), so paired ratios are steadier than ratios of
    medians."""
    return statistics.median(a / b for a, b in zip(times[kind], times[reference]))


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
    print_machine()
    print(f"forward, batch 1, median of {args.repeats} calls per contender, contenders called in turn")
    print(f"{'model':<24} {'L':>4} {'contender':<24} {'median s':>9} {'vs keras':>9} "
          f"{'paired':>7} {'hf/tf':>6} {'peak RSS MiB':>13}")
    print(f"('+malloc': run with {' '.join(f'{k}={v}' for k, v in MALLOC_KEEP.items())}; "
          "'vs keras': ratio of medians; 'paired': median of per-round ratios to keras; "
          "'hf/tf': median of per-round ratios of dialect hf (exact-erf GELU) to tf, same dtype)")
    for title, family, directory, length, mem in configs:
        kinds = [f"refimpl-{family}:float32", f"refimpl-{family}:float32+malloc",
                 f"refimpl-{family}:float64", f"refimpl-{family}:float64+malloc",
                 f"refimpl-{family}:float32:hf", f"refimpl-{family}:float64:hf", f"keras-{family}"]
        workers = {kind: Worker(kind, directory, length, mem) for kind in kinds}
        times = call_in_turn(workers, args.repeats)
        rss = {kind: worker.close()["rss_mib"] for kind, worker in workers.items()}
        keras = f"keras-{family}"
        keras_median = statistics.median(times[keras])
        for kind in kinds:
            median = statistics.median(times[kind])
            label = kind.replace(f"refimpl-{family}:", "refimpl ")
            hf_tf = (f"{paired_ratio(times, kind, kind.removesuffix(':hf')):6.3f}"
                     if kind.endswith(":hf") else "")
            print(f"{title:<24} {length:>4} {label:<24} {median:9.3f} {median / keras_median:9.2f} "
                  f"{paired_ratio(times, kind, keras):7.2f} {hf_tf:>6} {rss[kind]:13.0f}")


# --- scaling: B x L x contenders ----------------------------------------------------------------
CONTENDERS = ("refimpl-float32", "refimpl-float64", "keras", "torch")


def contender_kind(contender: str, family: str) -> str:
    """The Worker kind of a scaling contender: "refimpl-float32", "bert" -> "refimpl-bert:float32"."""
    if contender.startswith("refimpl-"):
        return f"refimpl-{family}:{contender.split('-', 1)[1]}"
    return f"{contender}-{family}"


def resolve_sizes(args) -> argparse.Namespace:
    """Fill the sizes left unset: --quick means B=1, L=128 and 3 repeats; otherwise B = 1 and 8,
    L = 128 and 512, 5 repeats. Sizes given explicitly win over --quick."""
    quick = getattr(args, "quick", False)
    if getattr(args, "batch", None) is None:
        args.batch = [1] if quick else [1, 8]
    if getattr(args, "length", None) is None:
        args.length = [128] if quick else [128, 512]
    if getattr(args, "repeats", None) is None:
        args.repeats = 3 if quick else 5
    return args


def configurations(args) -> list[tuple[str, int, int]]:
    """(model family, batch, length) in the order they run: per model, per length, per batch."""
    return [(family, batch, length) for family in args.models for length in args.length
            for batch in args.batch]


def bench_scaling(args) -> None:
    """The scaling table (see the module docstring), then with --profile the profiles."""
    args = resolve_sizes(args)
    print_machine()
    official, transformers_dir = {}, {}
    for family in args.models:
        official[family] = _build_in_child(f"build_{family}_base", args.cache)
        if "torch" in args.contenders:
            transformers_dir[family] = _build_in_child(f"build_{family}_transformers", args.cache)
    print(f"scaling: one forward (XLNet bi, no memory; segment ids 0), median of {args.repeats} "
          f"calls per contender, contenders called in turn {PAUSE} s apart")
    print('  refimpl: dialect "tf" (tanh GELU); keras: keras-bert / keras-xlnet, TensorFlow-CPU, '
          "float32; torch: transformers BertModel / XLNetModel, PyTorch-CPU, float32, from "
          'refimpl.convert with dialect "tf" (gelu_new)')
    print(f"{'model':<14} {'B':>2} {'L':>4} {'contender':<16} {'median s':>9} {'ms/seq':>8} "
          f"{'vs keras':>9} {'peak RSS MiB':>13}", flush=True)
    pools = {}
    for family, batch, length in configurations(args):
        workers = {}
        try:
            for contender in args.contenders:
                directory = transformers_dir[family] if contender == "torch" else official[family]
                workers[contender] = Worker(contender_kind(contender, family), directory, length,
                                            batch=batch)
            times = call_in_turn(workers, args.repeats)
        except BaseException:
            for worker in workers.values():
                worker.proc.kill()
            raise
        reports = {contender: worker.close() for contender, worker in workers.items()}
        medians = {contender: statistics.median(t) for contender, t in times.items()}
        keras = medians.get("keras")
        for contender, median in medians.items():
            ratio = f"{median / keras:9.2f}" if keras else f"{'-':>9}"
            print(f"{TITLES[family]:<14} {batch:>2} {length:>4} {contender:<16} {median:9.3f} "
                  f"{1000 * median / batch:8.1f} {ratio} {reports[contender]['rss_mib']:13.0f}",
                  flush=True)
        for contender, report in reports.items():
            pools.setdefault(f"{family} {contender}",
                             "; ".join(filter(None, [report["info"], *report["pools"]])))
    print("threads and BLAS in each worker (threadpoolctl; TensorFlow and PyTorch run their "
          "matmuls in their own kernels, not NumPy's BLAS):")
    for name, text in pools.items():
        print(f"  {name}: {text}")
    if args.profile:
        for family, batch, length in configurations(args):
            profile_in_child(family, official[family], batch, length, "float32", args.top)


# --- profile: where one refimpl forward's time goes ---------------------------------------------
# (category, regex on the owner's name), first match wins. Owners are refimpl's functions and
# np.einsum (charged per calling function: "numpy.einsum in post_attention"); the time of every
# other function (NumPy's Python helpers, C methods) goes to the owner that called it.
CATEGORIES = [
    ("matmul", r"^refimpl\.ops\.(dense|attention_scores|attention_values)$"
               r"|^refimpl\.xlnet\.attention\.head_projection$|^numpy\.einsum in "),
    ("softmax", r"^refimpl\..*\.softmax\w*$"),
    ("layer_norm", r"^refimpl\..*\.layer_norm$"),
    ("activation", r"^refimpl\.ops\.(gelu\w*|relu|erf|_erf\w*|_poly)$"),
    ("rel_shift", r"\.rel_shift$"),
    ("masks and positions", r"\.(attention_mask\w*|segment_matrix|\w*positional\w*|clamp_positions"
                            r"|cache_mem|mask_embedding)$"),
    ("embedding", r"\.(embedding_lookup|embedding_postprocessor)$"),
    ("weight cast", r"^refimpl\.[\w.]*\.cast\w*$"),
    ("precision emulation", r"^refimpl\.precision\."),
    ("model code", r"^refimpl\."),  # the model functions' own lines: residual adds, scales, copies
]
EINSUM = re.compile(r"^numpy\.(_core|core)\.einsumfunc\.einsum$")
OUTSIDE = "(outside refimpl: the caller, the profiler)"


def category(owner: str) -> str:
    """The category of an owner name ("refimpl.ops.dense" -> "matmul"); "other" for none."""
    for name, pattern in CATEGORIES:
        if re.search(pattern, owner):
            return name
    return "other"


def _module_name(filename: str, packages: dict[str, str]) -> str | None:
    """"refimpl.xlnet.attention" for a file inside one of `packages` ({name: directory})."""
    path = os.path.abspath(filename)
    for package, directory in packages.items():
        if path.startswith(directory + os.sep) and path.endswith(".py"):
            return ".".join([package, *os.path.relpath(path[:-3], directory).split(os.sep)])
    return None


def attribute(stats: dict, packages: dict[str, str]) -> tuple[dict[str, float], dict[str, int]]:
    """Charge every function's self time (cProfile's tottime) to an owner: ({owner: seconds},
    {owner: calls}). `stats` is pstats.Stats(...).stats: {(file, line, name): (primitive calls,
    calls, tottime, cumtime, {caller: (calls, primitive calls, tottime, cumtime)})}.

    A refimpl function owns its time. np.einsum's time is owned per calling function. Any
    other function's time is shared among its callers in proportion to its cumulative time
    under each, and so on up to an owner; what reaches no owner is OUTSIDE."""
    names = {}
    for key in stats:
        filename, _, function = key
        module = _module_name(filename, packages) if filename != "~" else None
        names[key] = f"{module}.{function}" if module else function

    def shares(key, seen=frozenset()) -> dict[str, float]:
        name = names[key]
        if name.startswith("refimpl."):
            return {name: 1.0}
        callers = stats[key][4]
        total = sum(edge[3] for edge in callers.values())
        if key in seen or total <= 0:
            return {OUTSIDE: 1.0}
        out = {}
        for caller, edge in callers.items():
            if EINSUM.match(name):
                owners = {f"numpy.einsum in {names[caller].rsplit('.', 1)[-1]}": 1.0}
            else:
                owners = shares(caller, seen | {key})
            for owner, fraction in owners.items():
                out[owner] = out.get(owner, 0.0) + fraction * edge[3] / total
        return out

    seconds, calls = {}, {}
    for key, (_, ncalls, tottime, _, callers) in stats.items():
        for owner, fraction in shares(key).items():
            seconds[owner] = seconds.get(owner, 0.0) + tottime * fraction
        if names[key].startswith("refimpl."):
            calls[names[key]] = calls.get(names[key], 0) + ncalls
        elif EINSUM.match(names[key]):
            for caller, edge in callers.items():
                owner = f"numpy.einsum in {names[caller].rsplit('.', 1)[-1]}"
                calls[owner] = calls.get(owner, 0) + edge[0]
    return seconds, calls


def matmul_shapes(family: str, config, batch: int, length: int) -> list[tuple[str, int, tuple]]:
    """The matrix products of one forward: [(what, calls, (matrices, rows, inner, columns))].

    BERT: q, k, v, output and the two FFN dense layers over B*L rows; scores Q K^T and context
    P V per head; the pooler. XLNet (bi, no memory: L keys, 2L relative positions): q, k, v, o
    over B*L rows and the position projection r over B*2L; ac (L keys) and bd (2L positions)
    and P V per head; the two FFN layers. Left out as negligible: XLNet's segment term (a
    contraction with 2 segment rows) and its sinusoid."""
    B, L = batch, length
    if family == "bert":
        D, I, N, layers = (config.hidden_size, config.intermediate_size,
                           config.num_attention_heads, config.num_hidden_layers)
        H = D // N
        return [("dense q, k, v, output", 4 * layers, (1, B * L, D, D)),
                ("dense FFN in", layers, (1, B * L, D, I)),
                ("dense FFN out", layers, (1, B * L, I, D)),
                ("scores Q K^T", layers, (B * N, L, H, L)),
                ("context P V", layers, (B * N, L, L, H)),
                ("pooler", 1, (1, B, D, D))]
    D, I, N, H, layers = config.d_model, config.d_inner, config.n_head, config.d_head, config.n_layer
    return [("projection q, k, v, o", 4 * layers, (1, B * L, D, N * H)),
            ("projection r", layers, (1, B * 2 * L, D, N * H)),
            ("scores ac", layers, (B * N, L, H, L)),
            ("scores bd", layers, (B * N, L, H, 2 * L)),
            ("context P V", layers, (B * N, L, L, H)),
            ("dense FFN in", layers, (1, B * L, D, I)),
            ("dense FFN out", layers, (1, B * L, I, D))]


def blas_floor(shapes, dtype, repeats: int = 3) -> list[tuple[str, int, float, float]]:
    """Each shape of `matmul_shapes` timed alone: np.matmul of contiguous random operands into a
    preallocated output (no allocation, no page faults), median of `repeats` after one warm-up
    call, times its number of calls: [(shape text, calls, seconds, GFLOP)]."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for what, calls, (matrices, m, k, n) in shapes:
        a = rng.standard_normal((matrices, m, k)).astype(dtype)
        b = rng.standard_normal((matrices, k, n)).astype(dtype)
        out = np.empty((matrices, m, n), dtype)
        np.matmul(a, b, out=out)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - t)
        text = f"{what}: {matrices} x ({m}x{k} @ {k}x{n})" if matrices > 1 else f"{what}: {m}x{k} @ {k}x{n}"
        rows.append((text, calls, statistics.median(times) * calls, 2e-9 * matrices * m * k * n * calls))
    return rows


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # both thresholds' static defaults


def set_malloc_thresholds(trim: int, mmap: int) -> bool:
    """glibc mallopt(M_TRIM_THRESHOLD, trim) and mallopt(M_MMAP_THRESHOLD, mmap) in this
    process: with MALLOC_KEEP's values it does what those variables do at start (freed memory
    stays with malloc, large arrays come from the heap: no page faults once warm); with
    GLIBC_DEFAULT_THRESHOLD glibc's static defaults come back (its dynamic raising of the mmap
    threshold stays off). False where there is no glibc mallopt."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, trim)) and bool(mallopt(M_MMAP_THRESHOLD, mmap))


def timed_calls(step, repeats: int) -> tuple[float, int]:
    """(median seconds, median minor page faults) of `repeats` calls of step()."""
    walls, faults = [], []
    for _ in range(repeats):
        f, t = minor_faults(), time.perf_counter()
        step()
        walls.append(time.perf_counter() - t)
        faults.append(minor_faults() - f)
    return statistics.median(walls), int(statistics.median(faults))


def refimpl_step(family: str, model, batch: int, length: int, dtype, seed: int = 0):
    """One refimpl forward as the scaling workers run it (XLNet: bi, segment ids 0, no memory),
    as a function of no arguments; token ids in TOKEN_RANGE, within the model's vocabulary."""
    import numpy as np

    from refimpl import bert, xlnet

    vocab = model.config.vocab_size if family == "bert" else model.config.n_token
    low, high = TOKEN_RANGE[family]
    tokens = np.random.default_rng(seed).integers(min(low, vocab - 1), min(high, vocab), (batch, length))
    if family == "bert":
        return lambda: bert.forward(model, tokens, dtype=dtype).sequence
    segments = np.zeros_like(tokens)
    return lambda: xlnet.forward(model, tokens, segments, attn_type="bi", dtype=dtype).content


@dataclasses.dataclass
class Profile:
    """One refimpl forward, taken apart (see profile_forward)."""
    title: str
    wall: float  # seconds of one forward without the profiler (median)
    faults: int  # its minor page faults (median)
    profiled: float  # seconds of the forward under cProfile (the sum of all self times)
    categories: list[tuple[str, float]]  # (category, seconds), most first
    functions: list[tuple[str, str, int, float]]  # (owner, category, calls, seconds), most first
    floor: list[tuple[str, int, float, float]]  # blas_floor rows
    malloc: str  # how glibc malloc ran the timed forwards
    wall_kept: float | None = None  # the same with malloc keeping freed memory, if measured
    faults_kept: int | None = None


def profile_forward(family: str, model, batch: int, length: int, dtype, repeats: int = 3) -> Profile:
    """Take one refimpl forward apart (`model` from bert.load / xlnet.load; family "bert" or
    "xlnet"). After two warm-up calls: `repeats` timed calls (wall time and minor page faults,
    medians); one call under cProfile, charged to owners and categories (`attribute`); the BLAS
    floor of its matmul shapes. Then the cost of fresh memory: unless the MALLOC_KEEP variables
    are set already, glibc malloc is told to keep freed memory (set_malloc_thresholds), the
    forward timed again after two warm-up calls, and glibc's defaults restored."""
    import numpy as np

    import refimpl

    dtype = np.dtype(dtype)
    step = refimpl_step(family, model, batch, length, dtype)
    step(), step()
    wall, faults = timed_calls(step, repeats)
    profiler = cProfile.Profile()
    profiler.enable()
    step()
    profiler.disable()
    packages = {"refimpl": os.path.dirname(os.path.abspath(refimpl.__file__)),
                "numpy": os.path.dirname(os.path.abspath(np.__file__))}
    seconds, calls = attribute(pstats.Stats(profiler).stats, packages)
    by_category = {}
    for owner, s in seconds.items():
        by_category[category(owner)] = by_category.get(category(owner), 0.0) + s
    functions = sorted(((owner.removeprefix("refimpl."), category(owner), calls.get(owner, 0), s)
                        for owner, s in seconds.items()), key=lambda row: -row[3])
    width = model.config.hidden_size if family == "bert" else model.config.d_model
    title = f"refimpl {'BERT' if family == 'bert' else 'XLNet bi'} (D={width}) {dtype}, B={batch} L={length}"
    floor = blas_floor(matmul_shapes(family, model.config, batch, length), dtype)
    profile = Profile(title=title, wall=wall, faults=faults, profiled=sum(seconds.values()),
                      categories=sorted(by_category.items(), key=lambda kv: -kv[1]),
                      functions=functions, floor=floor, malloc="glibc malloc defaults")
    if any(k in os.environ for k in MALLOC_KEEP):
        profile.malloc = " ".join(f"{k}={os.environ.get(k, 'unset')}" for k in MALLOC_KEEP)
    elif set_malloc_thresholds(*(int(v) for v in MALLOC_KEEP.values())):
        try:
            step(), step()
            profile.wall_kept, profile.faults_kept = timed_calls(step, repeats)
        finally:
            set_malloc_thresholds(GLIBC_DEFAULT_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
    return profile


def format_profile(p: Profile, top: int = 15) -> str:
    """The profile as text: categories, the `top` owners, the BLAS floor, fresh memory."""
    pct = lambda s: 100 * s / p.profiled if p.profiled else 0.0  # noqa: E731
    lines = [f"profile: {p.title}: one forward {p.wall:.3f} s (median), {p.profiled:.3f} s under "
             "cProfile; self time of each function plus the NumPy helpers it called",
             f"  {'category':<22} {'s':>8} {'%':>6}"]
    lines += [f"  {name:<22} {s:8.4f} {pct(s):6.1f}" for name, s in p.categories]
    lines += [f"  {'total':<22} {p.profiled:8.4f} {100.0:6.1f}",
              f"  {'function':<44} {'category':<20} {'calls':>6} {'s':>8} {'%':>6}"]
    lines += [f"  {owner[:44]:<44} {cat:<20} {n:>6} {s:8.4f} {pct(s):6.1f}"
              for owner, cat, n, s in p.functions[:top]]
    matmul = sum(s for name, s in p.categories if name == "matmul")
    floor = sum(row[2] for row in p.floor)
    gflop = sum(row[3] for row in p.floor)
    lines.append("  BLAS floor: the same matmul shapes alone (np.matmul into preallocated "
                 "contiguous arrays)")
    lines.append(f"  {'shape':<58} {'calls':>6} {'s':>8} {'GFLOP/s':>8}")
    lines += [f"  {text:<58} {n:>6} {s:8.4f} {g / s if s else 0.0:8.1f}" for text, n, s, g in p.floor]
    lines.append(f"  floor {floor:.4f} s ({gflop:.1f} GFLOP) = {100 * floor / p.wall:.0f} % of the "
                 f"forward; the matmul category is {matmul / floor if floor else 0.0:.2f} x the floor")
    lines.append(f"  fresh memory: {p.faults} minor page faults per forward ({p.malloc})")
    if p.wall_kept is not None:
        saved = p.wall - p.wall_kept
        lines[-1] += (f"; {p.wall_kept:.3f} s and {p.faults_kept} faults with malloc keeping freed "
                      f"memory (mallopt as MALLOC_KEEP): a difference of {saved:+.3f} s "
                      f"({100 * saved / p.wall:+.1f} %)")
    return "\n".join(lines)


def print_profile(family: str, model_dir: str, batch: int, length: int, dtype: str, top: int) -> None:
    """Load the model, profile one forward, print it and this process's peak RSS."""
    sys.path.insert(0, ROOT)
    from refimpl import bert, xlnet

    weights = dtype if dtype in ("float32", "float64") else None  # emulated formats: float32
    model = (bert if family == "bert" else xlnet).load(model_dir, dtype=weights)
    print(format_profile(profile_forward(family, model, batch, length, dtype), top))
    print(f"  peak RSS of the profiling process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)


def profile_in_child(family: str, model_dir: str, batch: int, length: int, dtype: str, top: int) -> None:
    """print_profile in a fresh process (its page faults and RSS are the forward's own)."""
    sys.stdout.flush()
    code = (f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'tools')!r}); import bench; "
            f"bench.print_profile({family!r}, {model_dir!r}, {batch}, {length}, {dtype!r}, {top})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def bench_profile(args) -> None:
    """A profile per model, size and dtype, each in a fresh process."""
    print_machine()
    for family, batch, length in configurations(args):
        directory = _build_in_child(f"build_{family}_base", args.cache)
        for dtype in args.dtype:
            profile_in_child(family, directory, batch, length, dtype, args.top)


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
    print_machine()
    print(f"checkpoint: {path} ({size / 1e6:.0f} MB on disk, {nbytes / 1e6:.0f} MB of tensors), "
          f"{args.repeats} runs each, alternating, fresh process per run; {os.cpu_count()} cores")
    print(f"{'reader':<26} {'median s':>9} {'min s':>7} {'vs TF':>6} {'MB/s':>6} {'peak RSS MiB':>13}")
    for name in READERS:
        median = statistics.median(times[name])
        print(f"{name:<26} {median:9.3f} {min(times[name]):7.3f} {median / tf_median:6.2f} "
              f"{nbytes / 1e6 / median:6.0f} {rss[name]:13.0f}")


def _sizes(parser: argparse.ArgumentParser, batch: list[int] | None, length: list[int] | None) -> None:
    """--models, --batch, --length (each one or more values) and --cache; batch and length None:
    set by resolve_sizes."""
    default = lambda values, unset: " ".join(map(str, values)) if values else unset  # noqa: E731
    parser.add_argument("--models", nargs="+", choices=("bert", "xlnet"), default=["bert", "xlnet"])
    parser.add_argument("--batch", nargs="+", type=int, default=batch, metavar="B",
                        help=f"batch sizes (default {default(batch, '1 8; 1 with --quick')})")
    parser.add_argument("--length", nargs="+", type=int, default=length, metavar="L",
                        help=f"sequence lengths (default {default(length, '128 512; 128 with --quick')})")
    parser.add_argument("--cache", default=DEFAULT_CACHE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    fw = sub.add_parser("forward", help="forward passes at batch 1 vs keras-bert / keras-xlnet")
    fw.add_argument("--repeats", type=int, default=5)
    fw.add_argument("--cache", default=DEFAULT_CACHE)
    fw.add_argument("--quick", action="store_true", help="L=128 only")
    fw.add_argument("--filter", help='only configurations whose "model L" contains this, e.g. "bi 512"')
    fw.set_defaults(func=bench_forward)
    sc = sub.add_parser("scaling", help="B=1, 8 x L=128, 512: refimpl float32/64, Keras, transformers")
    _sizes(sc, batch=None, length=None)
    sc.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    sc.add_argument("--repeats", type=int, default=None,
                    help="calls per contender (default 5; 3 with --quick)")
    sc.add_argument("--quick", action="store_true", help="B=1, L=128, 3 repeats (unless given)")
    sc.add_argument("--profile", action="store_true", help="then profile refimpl float32 at each size")
    sc.add_argument("--top", type=int, default=15, help="functions listed by --profile")
    sc.set_defaults(func=bench_scaling)
    pr = sub.add_parser("profile", help="where one refimpl forward's time goes")
    _sizes(pr, batch=[1], length=[128])
    pr.add_argument("--dtype", nargs="+", choices=("float32", "float64"), default=["float32"])
    pr.add_argument("--top", type=int, default=15, help="functions listed")
    pr.set_defaults(func=bench_profile)
    ck = sub.add_parser("checkpoint", help="checkpoint read+verify vs TensorFlow's reader")
    ck.add_argument("--repeats", type=int, default=5)
    ck.add_argument("--cache", default=DEFAULT_CACHE)
    ck.set_defaults(func=bench_checkpoint)
    both = sub.add_parser("all", help="forward, scaling, then checkpoint")
    both.add_argument("--repeats", type=int, default=5)
    both.add_argument("--cache", default=DEFAULT_CACHE)
    both.set_defaults(func=bench_all)
    return parser


def bench_all(args) -> None:
    bench_forward(argparse.Namespace(**vars(args), quick=False, filter=None))
    bench_scaling(build_parser().parse_args(["scaling", "--repeats", str(args.repeats),
                                             "--cache", args.cache]))
    bench_checkpoint(args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
