"""`refimpl compare`, `refimpl.testing.assert_matches`, `golden make` and the CLI's handling of bad
input: each behaviour a porter relies on has a test that fails when it breaks (issue 9).

Expected values here are written by hand (a tensor with one known error, a NaN, an infinity) or
taken from the shipped golden cases (made by tools/make_golden.py, cross-checked against the
anchors); none is produced by the comparison under test.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from refimpl import bert, checkpoint, compare, golden, run, xlnet
from refimpl.testing import assert_matches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "golden")
CASES = os.path.join(GOLDEN, "cases")


def refimpl(*args, cwd=ROOT, env=None):
    exe = os.path.join(os.path.dirname(sys.executable), "refimpl")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "refimpl.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def outputs(case: str) -> dict:
    return golden.read_npz(os.path.join(CASES, case, "outputs.npz"))


# --- the report ------------------------------------------------------------------------------
def test_missing_names_never_hide_a_mismatch():
    """BERT's /scores cannot be captured with a module hook: a port without them still gets its
    real mismatch named, and exit 1."""
    expected = outputs("bert-padding-two-segments")
    actual = {k: v for k, v in expected.items() if not k.endswith("/scores")}
    actual["Encoder-2-FeedForward"] = actual["Encoder-2-FeedForward"] + 1e-3
    report = compare.compare(expected, actual)
    assert report.exit_code == 1
    assert report.first_divergence.name == "Encoder-2-FeedForward"
    assert [r.name for r in report.not_checked] == [k for k in expected if k.endswith("/scores")]
    text = report.format()
    assert "first divergence: Encoder-2-FeedForward" in text and "not checked" in text
    # nothing wrong but names missing: exit 2, unless they are allowed to be missing
    del actual["Encoder-2-FeedForward"]
    actual["Encoder-2-FeedForward"] = expected["Encoder-2-FeedForward"]
    assert compare.compare(expected, actual).exit_code == 2
    assert compare.compare(expected, actual, allow_missing=True).exit_code == 0


def test_shape_difference_is_the_first_divergence():
    expected = outputs("bert-plain")
    actual = dict(expected)
    actual["Embedding-Norm"] = expected["Embedding-Norm"][:, :-1]
    actual["Encoder-3-FeedForward"] = expected["Encoder-3-FeedForward"] + 1
    report = compare.compare(expected, actual)
    assert report.exit_code == 1 and report.first_divergence.name == "Embedding-Norm"
    assert report.first_divergence.status == compare.SHAPE


def test_tolerance_follows_the_lower_precision_of_the_two_sides():
    expected = outputs("bert-plain")
    inputs = golden.read_npz(os.path.join(CASES, "bert-plain", "inputs.npz"))
    as32 = run.named_tensors("bert", os.path.join(GOLDEN, "checkpoints", "bert-tiny"), inputs, {}, "tf",
                             np.float32)  # float32 golden values, as a float32 reference run gives
    # a float32 EXPECTED against a float64 port: float32's tolerance, not float64's
    report = compare.compare(as32, expected)
    assert report.exit_code == 0, report.format()
    assert report.rows[0].tolerance.reason == "default for float32"
    # and the same data forced to float64 tolerance fails: the lower precision is what passed it
    assert compare.compare(as32, expected, precision="float64").exit_code == 1
    assert compare.compare(expected, as32).exit_code == 0


def test_relative_error_is_finite_where_expected_is_zero():
    e = {"x": np.array([0.0, 1.0, -2.0])}
    a = {"x": np.array([1e-3, 1.0, -2.0])}
    row = compare.compare(e, a).rows[0]
    assert row.status == compare.MISMATCH
    assert np.isfinite(row.max_rel)
    # |a - e| / max(|e|, atol / rtol) with float64's rtol 1e-7, atol 1e-9: 1e-3 / 1e-2
    assert row.max_rel == pytest.approx(1e-3 / (1e-9 / 1e-7))
    assert row.err_tol == pytest.approx(1e-3 / 1e-9)


def test_mean_error_is_finite_when_errors_are_near_float64_max():
    """transformers' BERT masks with finfo.min where the golden holds -10000: the errors are
    ~1.8e308, and a plain mean overflows to inf (with a RuntimeWarning) although every error
    is finite."""
    lowest = np.finfo(np.float64).min
    e = {"scores": np.array([-10000.0, -10000.0, 0.5, 1.0])}
    a = {"scores": np.array([lowest, lowest, 0.5, 1.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = compare.compare(e, a).rows[0]
    assert row.status == compare.MISMATCH
    assert np.isfinite(row.mean_abs) and row.mean_abs == pytest.approx(-lowest / 2, rel=1e-12)
    assert row.mean_abs <= row.max_abs


def test_values_print_at_full_precision():
    """A 1.5e-7 difference must be visible in the printed values."""
    e = {"x": np.array([-0.6129370260238647])}
    a = {"x": np.array([-0.6129371760238647])}
    text = compare.compare(e, a).format()
    assert "expected -0.6129370260238647, actual -0.6129371760238647" in text


def test_nan_in_actual_where_expected_is_finite_is_a_counted_mismatch():
    e = {"x": np.ones((2, 3))}
    a = {"x": np.ones((2, 3))}
    a["x"][0, 1] = a["x"][1, 2] = np.nan
    row = compare.compare(e, a, rtol=1.0, atol=1.0).rows[0]  # no tolerance lets NaN through
    assert row.status == compare.MISMATCH and row.nonfinite == 2 and row.outside == 2
    text = compare.compare(e, a).format()
    assert "2 of them NaN/Inf where EXPECTED is finite" in text
    assert "inf" not in text.split("first divergence")[0].split("\n")[1].split()[2:3]  # not shown as inf error text
    a["x"][:] = 1.0
    a["x"][0, 0] = np.inf
    assert compare.compare(e, a, rtol=1.0, atol=1.0).rows[0].nonfinite == 1


def test_equal_infinities_and_nans_agree():
    e = {"x": np.array([np.inf, -np.inf, np.nan, 1.0])}
    assert compare.compare(e, {"x": e["x"].copy()}, rtol=0, atol=0).exit_code == 0
    assert compare.compare(e, {"x": np.array([-np.inf, -np.inf, np.nan, 1.0])}).exit_code == 1
    assert compare.compare(e, {"x": np.array([np.inf, -np.inf, 0.0, 1.0])}).exit_code == 1


def test_zero_tolerance_is_accepted():
    expected = outputs("bert-plain")
    r = refimpl("compare", os.path.join(CASES, "bert-plain"), os.path.join(CASES, "bert-plain"),
                "--atol", "0", "--rtol", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    nudged = dict(expected)
    nudged["Extract"] = np.nextafter(expected["Extract"], np.inf)
    report = compare.compare(expected, nudged, rtol=0, atol=0)
    assert report.exit_code == 1 and report.first_divergence.name == "Extract"


def test_a_per_name_override_is_applied():
    """bert-fully-padded-row carries a float32 override (its reason: the -10000 mask in
    float32); refimpl's own float32 run passes with it and fails without it."""
    folder = os.path.join(CASES, "bert-fully-padded-row")
    case = golden.read_case(folder)
    (override,) = case["tolerances"]["overrides"]
    assert override["dtype"] == "float32" and "fully padded" in override["reason"]
    inputs = golden.read_npz(os.path.join(folder, "inputs.npz"))
    port = run.named_tensors("bert", os.path.join(GOLDEN, "checkpoints", "bert-tiny"), inputs, {}, "tf",
                             np.float32)
    with_override = compare.compare(outputs("bert-fully-padded-row"), port, case["tolerances"])
    assert with_override.exit_code == 0, with_override.format()
    assert with_override.rows[0].tolerance.reason == override["reason"]
    without = compare.compare(outputs("bert-fully-padded-row"), port, {})
    assert without.exit_code == 1


def test_only_and_skip_select_names():
    expected = outputs("bert-plain")
    actual = dict(expected)
    actual["Encoder-1-FeedForward"] = actual["Encoder-1-FeedForward"] + 1
    assert compare.compare(expected, actual).exit_code == 1
    skipped = compare.compare(expected, actual, skip=["Encoder-1-*"])
    assert skipped.exit_code == 0 and skipped.filtered == [k for k in expected if k.startswith("Encoder-1-")]
    report = compare.compare(expected, actual, only=["Embedding-*", "Encoder-1-Multi*"])
    assert report.exit_code == 0 and all(r.name.startswith(("Embedding-", "Encoder-1-Multi")) for r in report.rows)
    assert len(report.filtered) == len(expected) - len(report.rows)
    r = refimpl("compare", os.path.join(CASES, "bert-plain"), os.path.join(CASES, "bert-plain"),
                "--only", "NSP*", "--only", "MLM*", "--skip", "MLM-Sim")
    assert r.returncode == 0 and "# 4 compared" in r.stdout, r.stdout


def test_json_and_plot(tmp_path):
    expected = outputs("xlnet-run-default")
    actual = dict(expected)
    actual["Attention-2/ef"] = actual["Attention-2/ef"] * 1.01
    golden.write_npz(tmp_path / "port.npz", actual)
    r = refimpl("compare", os.path.join(CASES, "xlnet-run-default"), tmp_path / "port.npz",
                "--json", tmp_path / "r.json", "--plot", tmp_path / "r.png")
    assert r.returncode == 1 and "first divergence: Attention-2/ef" in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["first_divergence"] == "Attention-2/ef" and report["exit_code"] == 1
    row = next(x for x in report["rows"] if x["name"] == "Attention-2/ef")
    assert row["status"] == "MISMATCH" and row["outside"] > 0 and row["err_tol"] > 1
    assert [x["name"] for x in report["rows"]] == list(expected)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_summary_line_stays_parseable():
    expected = outputs("bert-plain")
    lines = compare.compare(expected, expected).format().splitlines()
    assert "first divergence: none" in lines


def test_assert_matches():
    folder = os.path.join(CASES, "xlnet-run-default")
    report = assert_matches(folder, outputs("xlnet-run-default"))
    assert report.exit_code == 0
    broken = outputs("xlnet-run-default")
    broken["Attention-1/bd"] = broken["Attention-1/bd"] + 1e-6
    with pytest.raises(AssertionError) as info:
        assert_matches(folder, broken)
    message = str(info.value)
    assert message.startswith("first divergence: Attention-1/bd")
    assert "tolerance rtol=1e-07 atol=1e-09" in message and "worst at" in message
    assert_matches(folder, broken, skip=["Attention-1/bd"], atol=1e-5)
    partial = {k: v for k, v in outputs("xlnet-run-default").items() if "/" not in k}
    with pytest.raises(AssertionError, match="missing from ACTUAL"):
        assert_matches(folder, partial)
    assert_matches(folder, partial, allow_missing=True)


# --- the CLI never answers with a traceback --------------------------------------------------
def test_broken_pipe_keeps_the_exit_code():
    case = os.path.join(CASES, "xlnet-run-default")
    exe = os.path.join(os.path.dirname(sys.executable), "refimpl")
    p = subprocess.Popen([exe, "compare", case, case], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()  # `| head -1`
    assert p.wait(timeout=120) == 0
    assert b"Traceback" not in p.stderr.read()


@pytest.mark.parametrize("args, message", [
    (["run", "--out", "/nonexistent-dir/x.npz"], "--out /nonexistent-dir/x.npz: the folder"),
    (["run", "--plot-attention", "/nonexistent-dir/x.png"], "--plot-attention /nonexistent-dir/x.png"),
    (["run", "--tokens", "99999999999999999999999"], "does not fit in a 64-bit integer"),
    (["run", "--tokens", ""], "--tokens: no ids given"),
    (["run", "--checkpoint", "golden/checkpoints/xlnet-tinyy"], "golden/checkpoints/xlnet-tinyy: no such file"),
    (["inspect", "golden/checkpoints/nope"], "golden/checkpoints/nope: no such file"),
    (["compare", "golden/cases/bert-plain", "README.md"], "not an .npz file"),
    (["golden", "verify", "golden/nope"], "no such file"),
])
def test_usage_errors_exit_2_with_a_message(args, message):
    r = refimpl(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_unwritable_out_fails_before_the_run(tmp_path):
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.access(tmp_path / "ro", os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): a read-only folder is not read-only")
        r = refimpl("run", "--out", tmp_path / "ro" / "x.npz")
        assert r.returncode == 2 and "not writable" in r.stderr
        assert "refimpl run: xlnet" not in r.stdout  # nothing ran
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    r = refimpl("run", "--out", tmp_path)  # a folder
    assert r.returncode == 2 and "is a directory" in r.stderr and not r.stdout


def test_npy_passed_to_compare(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    r = refimpl("compare", os.path.join(CASES, "bert-plain"), tmp_path / "x.npy")
    assert r.returncode == 2 and "a .npy file holds one unnamed array" in r.stderr


def test_out_writes_exactly_the_given_path(tmp_path):
    r = refimpl("run", "--out", tmp_path / "x.txt")
    assert r.returncode == 0, r.stderr
    assert f"to {tmp_path / 'x.txt'}" in r.stdout
    assert os.path.exists(tmp_path / "x.txt") and not os.path.exists(tmp_path / "x.txt.npz")
    assert "content" in golden.read_npz(tmp_path / "x.txt")


def test_plot_attention_without_matplotlib_fails_first(tmp_path):
    fake = tmp_path / "site"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**os.environ, "PYTHONPATH": str(fake)}
    r = refimpl("run", "--plot-attention", tmp_path / "a.png", env=env)
    assert r.returncode == 2 and "needs matplotlib" in r.stderr and not r.stdout


def test_inspect_values_reads_only_that_tensor(tmp_path):
    """A checkpoint with one truncated tensor: --values of another one works; of the broken one
    names the broken one."""
    src = os.path.join(GOLDEN, "checkpoints", "bert-tiny")
    shutil.copytree(src, tmp_path / "ckpt")
    variables = checkpoint.list_variables(tmp_path / "ckpt")
    names = list(variables)
    data = tmp_path / "ckpt" / "bert_model.ckpt.data-00000-of-00001"
    size = os.path.getsize(data)
    # the tensor stored last in the data file: cut the file in its middle
    from refimpl.checkpoint import _open
    bundle = _open(str(tmp_path / "ckpt"), verify=False)
    last = max(bundle.entries, key=lambda n: bundle.entries[n].offset)
    entry = bundle.entries[last]
    assert entry.offset + entry.size == size
    with open(data, "r+b") as f:
        f.truncate(entry.offset + entry.size // 2)
    other = next(n for n in names if n != last and variables[n][1])
    r = refimpl("inspect", tmp_path / "ckpt", "--values", other)
    assert r.returncode == 0, r.stderr
    assert f"name:  {other}" in r.stdout
    r = refimpl("inspect", tmp_path / "ckpt", "--values", last)
    assert r.returncode == 1 and last in r.stderr


def test_run_checks_golden_on_a_copy_of_the_shipped_checkpoint(tmp_path):
    shutil.copytree(os.path.join(GOLDEN, "checkpoints", "bert-tiny"), tmp_path / "copy")
    r = refimpl("run", "--model", "bert", "--checkpoint", tmp_path / "copy")
    assert r.returncode == 0 and "golden: matches case bert-run-default" in r.stdout, r.stdout
    # a different checkpoint (one weight changed) is not checked against the case
    values = checkpoint.load_checkpoint(tmp_path / "copy")
    config = tmp_path / "copy" / "bert_config.json"
    cfg = json.loads(config.read_text())
    cfg["hidden_act"] = "relu"
    config.write_text(json.dumps(cfg))
    r = refimpl("run", "--model", "bert", "--checkpoint", tmp_path / "copy")
    assert r.returncode == 0 and "not the one of case bert-run-default" in r.stdout, r.stdout
    assert values  # the copy was readable


def test_version():
    import refimpl as package
    r = refimpl("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"refimpl {package.__version__}"


# --- golden make and run --inputs --------------------------------------------------------------
def test_golden_make_reproduces_a_shipped_case(tmp_path):
    """The user's tool, fed a shipped case's inputs and options, writes the same tensors."""
    shipped = os.path.join(CASES, "xlnet-uni-mems-tf")
    case = golden.read_case(shipped)
    r = refimpl("golden", "make", tmp_path / "mine", "--model", "xlnet", "--checkpoint",
                os.path.join(GOLDEN, case["checkpoint"]), "--inputs", os.path.join(shipped, "inputs.npz"),
                "--attn-type", "uni", "--mem-len", "6", "--num-segments", "3",
                "--tolerance", "segment-2/*:1e-6:1e-8:a test of overrides")
    assert r.returncode == 0, r.stderr
    mine = golden.read_case(tmp_path / "mine")
    assert mine["name"] == "mine" and mine["options"] == case["options"]
    assert mine["checkpoint_sha256"] == case["checkpoint_sha256"]
    assert mine["tolerances"]["overrides"][0]["reason"] == "a test of overrides"
    assert "a TF or transformers port" not in mine["matchable_by"]  # dialect tf's text
    assert list(golden.read_npz(tmp_path / "mine" / "outputs.npz")) == list(outputs("xlnet-uni-mems-tf"))
    r = refimpl("compare", shipped, tmp_path / "mine")
    assert r.returncode == 0, r.stdout
    r = refimpl("golden", "verify", tmp_path / "mine")
    assert r.returncode == 0 and "1 of 1 golden cases verified" in r.stdout, r.stdout + r.stderr
    # not over a non-empty folder
    r = refimpl("golden", "make", tmp_path / "mine", "--model", "xlnet", "--checkpoint",
                os.path.join(GOLDEN, case["checkpoint"]), "--inputs", os.path.join(shipped, "inputs.npz"))
    assert r.returncode == 2 and "--force" in r.stderr


def test_run_inputs_accepts_the_same_file(tmp_path):
    shipped = os.path.join(CASES, "xlnet-two-stream-perm-mask")
    r = refimpl("run", "--inputs", os.path.join(shipped, "inputs.npz"), "--out", tmp_path / "o.npz")
    assert r.returncode == 0, r.stderr
    assert_matches(shipped, str(tmp_path / "o.npz"))
    golden.write_npz(tmp_path / "bad.npz", {"token_ids": np.ones((1, 3), np.int64), "tokens": np.ones(3)})
    r = refimpl("run", "--inputs", tmp_path / "bad.npz")
    assert r.returncode == 2 and "unknown arrays tokens" in r.stderr


def test_golden_make_api(tmp_path):
    inputs = {"token_ids": np.array([[2, 11, 12, 3]])}
    case, tensors = golden.make_case("bert", os.path.join(GOLDEN, "checkpoints", "bert-tiny"), inputs,
                                     name="api")
    assert case["checkpoint"] == os.path.join("checkpoints", "bert-tiny") and case["dialect"] == "tf"
    written = golden.write_case(tmp_path / "api", case, inputs, tensors)
    problems, report = golden.verify_case(str(tmp_path / "api"), GOLDEN)
    assert not problems and report.exit_code == 0 and written["files"]


# --- golden verify catches edits ---------------------------------------------------------------
def _copy_case(tmp_path, name):
    shutil.copytree(os.path.join(GOLDEN, "checkpoints"), tmp_path / "checkpoints")
    shutil.copytree(os.path.join(CASES, name), tmp_path / "cases" / name)
    return tmp_path


@pytest.mark.parametrize("edit", ["config", "checkpoint", "rename"])
def test_golden_verify_catches_an_edited_checkpoint_or_a_renamed_case(tmp_path, edit):
    g = _copy_case(tmp_path, "bert-plain")
    if edit == "config":
        path = g / "checkpoints" / "bert-tiny" / "bert_config.json"
        path.write_text(path.read_text().replace('"gelu"', '"relu"'))
    elif edit == "checkpoint":
        path = g / "checkpoints" / "bert-tiny" / "bert_model.ckpt.data-00000-of-00001"
        data = bytearray(path.read_bytes())
        data[100] ^= 1
        path.write_bytes(bytes(data))
    else:
        os.rename(g / "cases" / "bert-plain", g / "cases" / "bert-plain-renamed")
    r = refimpl("golden", "verify", "--golden", g)
    assert r.returncode == 1, r.stdout
    reason = {"config": "bert_config.json: sha256 differs", "checkpoint": "sha256 differs",
              "rename": "but the folder is 'bert-plain-renamed'"}[edit]
    assert reason in r.stdout


# --- numerics the tooling relies on ----------------------------------------------------------
def test_clamp_len_zero_means_no_clamping():
    """The original clamps only when clamp_len > 0."""
    m = xlnet.load(os.path.join(GOLDEN, "checkpoints", "xlnet-tiny"))
    ids = np.arange(10, 20)[None]
    none = xlnet.forward(m, ids, clamp_len=None).content
    assert np.array_equal(xlnet.forward(m, ids, clamp_len=0).content, none)
    assert not np.allclose(xlnet.forward(m, ids, clamp_len=2).content, none)


def test_layer_norm_of_near_constant_rows():
    """epsilon inside the square root: rows of (nearly) equal values, against the float64 formula
    written out here."""
    from refimpl import ops
    x = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0 + 1e-9, 1.0, 1.0 - 1e-9], [3.0, 3.0, 3.0, 3.0 + 1e-6]])
    gamma, beta = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 0.0, -0.5, 1.0])
    for eps in (1e-12, 1e-14, 1e-5):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        expected = (x - mean) / np.sqrt(var + eps) * gamma + beta
        np.testing.assert_allclose(ops.layer_norm(x, gamma, beta, eps), expected, rtol=1e-9, atol=1e-9)


def test_partitioned_variable_with_uncovered_slices_is_an_error(tmp_path):
    """Slices that do not cover the shape: a CheckpointError, never uninitialised memory. A
    Saver checkpoint with a variable in two parts, whose index then lists only the first."""
    import dataclasses

    import bundle_tools
    import tf_writers
    value = np.arange(12, dtype=np.float32).reshape(4, 3)
    prefix = tf_writers.save_saver({"w": ("float32", value)}, str(tmp_path / "model.ckpt"),
                                   partitioned={"w": (2, 0)})
    np.testing.assert_array_equal(checkpoint.load_checkpoint(prefix)["w"], value)
    header, entries = bundle_tools.read_raw(prefix)
    (full,) = [e for _, e in entries if e.slices]
    assert len(full.slices) == 2
    second = checkpoint.slice_key(b"w", full.slices[1])
    cut = [(k, dataclasses.replace(e, slices=e.slices[:1]) if e.slices else e)
           for k, e in entries if k != second]  # the second part: not listed, not stored
    bundle_tools.rewrite_index(prefix, prefix, header, cut)
    with pytest.raises(checkpoint.CheckpointError, match="do not cover its shape"):
        checkpoint.load_checkpoint(prefix)


def test_ci_sets_ci_itself():
    text = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "export CI=1" in text


def test_bert_fully_padded_row_is_well_defined():
    """tf dialect: a fully padded row attends as if unmasked (-10000 shifts every score)."""
    b = bert.load(os.path.join(GOLDEN, "checkpoints", "bert-tiny"))
    ids = np.array([[2, 11, 12, 3], [2, 11, 12, 3]])
    out = bert.forward(b, ids, attention_mask=np.array([[1, 1, 1, 1], [0, 0, 0, 0]]))
    np.testing.assert_allclose(out.sequence[1], bert.forward(b, ids[:1]).sequence[0], atol=1e-10)
