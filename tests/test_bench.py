"""tools/bench.py's code paths on the tiny checkpoints: argument parsing, the profile's charging of
time to operations, the BLAS floor's shapes, the workers' protocol. Nothing here times anything
against a limit: speed is checked by running the benchmark, never by a test."""
from __future__ import annotations

import os
import statistics
import sys
import types

import numpy as np
import pytest

from refimpl import bert, xlnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = os.path.join(ROOT, "golden", "checkpoints")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import bench  # noqa: E402


def parse(*argv):
    return bench.resolve_sizes(bench.build_parser().parse_args(list(argv)))


def test_scaling_sizes_default_quick_and_explicit():
    full = parse("scaling")
    assert bench.configurations(full) == [(m, b, n) for m in ("bert", "xlnet") for n in (128, 512)
                                          for b in (1, 8)]
    assert full.repeats == 5 and full.contenders == list(bench.CONTENDERS) and not full.profile
    quick = parse("scaling", "--quick", "--models", "bert")
    assert bench.configurations(quick) == [("bert", 1, 128)] and quick.repeats == 3
    mixed = parse("scaling", "--quick", "--length", "512", "--repeats", "2", "--contenders",
                  "refimpl-float32", "torch", "--profile")
    assert bench.configurations(mixed) == [("bert", 1, 512), ("xlnet", 1, 512)]
    assert mixed.repeats == 2 and mixed.contenders == ["refimpl-float32", "torch"] and mixed.profile
    with pytest.raises(SystemExit):
        parse("scaling", "--contenders", "jax")


def test_profile_arguments():
    args = parse("profile", "--models", "xlnet", "--batch", "2", "--length", "64", "--dtype",
                 "float32", "float64", "--top", "5")
    assert bench.configurations(args) == [("xlnet", 2, 64)]
    assert args.dtype == ["float32", "float64"] and args.top == 5
    assert bench.configurations(parse("profile")) == [("bert", 1, 128), ("xlnet", 1, 128)]


def test_contender_kinds_name_setups():
    kinds = [bench.contender_kind(c, m) for c in bench.CONTENDERS for m in ("bert", "xlnet")]
    assert {k.split(":")[0] for k in kinds} == set(bench.SETUPS)
    assert bench.contender_kind("refimpl-float64", "xlnet") == "refimpl-xlnet:float64"


def test_attribute_charges_helpers_to_their_callers():
    """A NumPy helper's time goes to the refimpl functions that called it, in proportion to the
    time under each; np.einsum's (with its own helpers) to "numpy.einsum in <caller>"."""
    packages = {"refimpl": "/src/refimpl", "numpy": "/np/numpy"}
    softmax = ("/src/refimpl/ops.py", 1, "softmax")
    norm = ("/src/refimpl/ops.py", 2, "layer_norm")
    post = ("/src/refimpl/xlnet/attention.py", 3, "post_attention")
    amax = ("/np/numpy/_core/_methods.py", 4, "_amax")
    einsum = ("/np/numpy/_core/einsumfunc.py", 5, "einsum")
    path = ("/np/numpy/_core/einsumfunc.py", 6, "einsum_path")
    runner = ("/elsewhere/run.py", 7, "main")
    stats = {  # key: (primitive calls, calls, tottime, cumtime, {caller: edge})
        runner: (1, 1, 0.01, 1.0, {}),
        softmax: (2, 2, 0.1, 0.4, {runner: (2, 2, 0.1, 0.4)}),
        norm: (1, 1, 0.2, 0.3, {runner: (1, 1, 0.2, 0.3)}),
        post: (1, 1, 0.05, 0.3, {runner: (1, 1, 0.05, 0.3)}),
        amax: (3, 3, 0.4, 0.4, {softmax: (2, 2, 0.3, 0.3), norm: (1, 1, 0.1, 0.1)}),
        einsum: (1, 1, 0.15, 0.25, {post: (1, 1, 0.15, 0.25)}),
        path: (1, 1, 0.1, 0.1, {einsum: (1, 1, 0.1, 0.1)}),
    }
    seconds, calls = bench.attribute(stats, packages)
    assert seconds == pytest.approx({"refimpl.ops.softmax": 0.4, "refimpl.ops.layer_norm": 0.3,
                                     "refimpl.xlnet.attention.post_attention": 0.05,
                                     "numpy.einsum in post_attention": 0.25, bench.OUTSIDE: 0.01})
    assert calls["refimpl.ops.softmax"] == 2 and calls["numpy.einsum in post_attention"] == 1
    assert {bench.category(owner) for owner in seconds} == {
        "softmax", "layer_norm", "model code", "matmul", "other"}


def test_matmul_shapes_count_every_weight_matrix():
    """The dense rows multiply B*L rows by every encoder weight matrix once per layer."""
    c = types.SimpleNamespace(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                              num_hidden_layers=3)
    dense = [(calls, s) for what, calls, s in bench.matmul_shapes("bert", c, 2, 8) if "dense" in what]
    assert sum(calls * k * n for calls, (_, rows, k, n) in dense) == 3 * (4 * 32 * 32 + 2 * 32 * 64)
    assert {rows for _, (_, rows, _, _) in dense} == {16}
    x = types.SimpleNamespace(d_model=32, d_inner=64, n_head=4, d_head=8, n_layer=3)
    shapes = dict((what, s) for what, _, s in bench.matmul_shapes("xlnet", x, 2, 8))
    assert shapes["projection r"] == (1, 32, 32, 32) and shapes["scores bd"] == (8, 8, 8, 16)


@pytest.mark.parametrize("family, name, own", [
    ("bert", "bert-tiny", set()),
    ("xlnet", "xlnet-tiny", {"rel_shift", "masks and positions"}),
])
def test_profile_covers_the_operations(family, name, own):
    model = (bert if family == "bert" else xlnet).load(os.path.join(CHECKPOINTS, name))
    p = bench.profile_forward(family, model, batch=2, length=8, dtype=np.float32, repeats=1)
    categories = dict(p.categories)
    expected = {"matmul", "softmax", "layer_norm", "activation", "model code", "embedding"} | own
    assert expected <= set(categories)
    assert all(s >= 0 for s in categories.values())
    assert sum(categories.values()) == pytest.approx(p.profiled)
    # every refimpl function lands in a named category, not in "other"
    assert [f for f, cat, _, _ in p.functions if cat == "other"] == [bench.OUTSIDE]
    assert len(p.floor) == len(bench.matmul_shapes(family, model.config, 2, 8))
    assert p.wall > 0 and p.faults >= 0
    text = bench.format_profile(p, top=5)
    for words in ("profile: refimpl", "matmul", "BLAS floor", "fresh memory"):
        assert words in text


def test_openblas_settings_are_reported(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    assert bench.openblas_env() == "OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE unset"
    assert bench._pool_text({"internal_api": "openblas", "version": "0.3", "architecture": "Haswell",
                             "num_threads": 2}) == "openblas 0.3 Haswell 2 threads"


def test_refimpl_worker_runs_and_reports():
    worker = bench.Worker("refimpl-xlnet:float32", os.path.join(CHECKPOINTS, "xlnet-tiny"), 8,
                          batch=2, tokens=(6, 100), warmup=1)
    assert worker.time() > 0
    report = worker.close()
    assert report["rss_mib"] > 0 and report["pools"] and worker.proc.returncode == 0


@pytest.mark.parametrize("family", ["bert", "xlnet"])
def test_refimpl_worker_runs_the_dialect_its_kind_names(family):
    """":hf" reaches the forward: an unknown dialect makes the worker fail in its warm-up."""
    folder, tokens = os.path.join(CHECKPOINTS, f"{family}-tiny"), (6, 100)
    worker = bench.Worker(f"refimpl-{family}:float64:hf", folder, 8, tokens=tokens, warmup=1)
    assert worker.time() > 0 and worker.close()["rss_mib"] > 0
    with pytest.raises(RuntimeError, match="failed to start"):
        bench.Worker(f"refimpl-{family}:float64:nosuch", folder, 8, tokens=tokens, warmup=1)


def test_paired_ratio_divides_within_rounds():
    """B takes 1.1x A, and the machine slows down 3x in round 3, between A's call and B's: the
    ratio of medians says 3.3x (A's median is from a fast call, B's from a slow one), the
    paired ratio 1.1x."""
    times = {"A": [1.0, 1.0, 1.0, 3.0, 3.0], "B": [1.1, 1.1, 3.3, 3.3, 3.3]}
    assert statistics.median(times["B"]) / statistics.median(times["A"]) == pytest.approx(3.3)
    assert bench.paired_ratio(times, "B", "A") == pytest.approx(1.1)


def test_transformers_worker_runs_on_a_converted_folder(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from refimpl import convert

    folder = tmp_path / "bert-tiny-hf"
    convert.to_transformers(os.path.join(CHECKPOINTS, "bert-tiny"), folder, dialect="tf")
    worker = bench.Worker("torch-bert", str(folder), 8, batch=2, tokens=(1, 100), warmup=1)
    assert worker.time() > 0
    report = worker.close()
    assert "torch" in report["info"] and "gelu_new" in report["info"]
