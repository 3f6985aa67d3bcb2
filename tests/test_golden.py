"""Golden regression and the user's tools (`refimpl compare`, `refimpl golden verify`), run through
the console script as a user would.

The golden cases were made by `python tools/make_golden.py --write` (refimpl in float64,
cross-checked against the Keras anchors; each case.json records the command, versions,
checkpoint sha256 and the measured agreement). The regression test recomputes each case and
compares within the case's tolerances.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from refimpl import golden

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "golden")
CASES = golden.case_folders(GOLDEN)


def refimpl(*args, cwd=ROOT):
    exe = os.path.join(os.path.dirname(sys.executable), "refimpl")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "refimpl.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd)


def test_there_are_enough_unique_cases():
    names = [golden.read_case(f)["name"] for f in CASES]
    assert len(names) == len(set(names)) >= 12

    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(GOLDEN) for f in fs)
    # 10 MB: the fine-tuned checkpoints carry Adam slots (3x the weights), as real ones do
    assert total < 10_000_000, f"golden/ has grown to {total} bytes"


@pytest.mark.parametrize("folder", CASES, ids=[os.path.basename(f) for f in CASES])
def test_golden_regression(folder):
    problems, report = golden.verify_case(folder, GOLDEN)
    assert not problems, problems
    assert report.exit_code == 0, report.format()
    case = golden.read_case(folder)
    assert case["command"] == "python tools/make_golden.py --write"
    agreement = case["anchor_agreement"]  # every case was cross-checked against an anchor
    tol = agreement["tolerance"]
    assert agreement["anchor"] and agreement["compared"], agreement
    assert agreement["max_abs"] <= tol["atol"] + 100 * tol["rtol"], agreement


def test_golden_verify_command_passes():
    r = refimpl("golden", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(CASES)} of {len(CASES)} golden cases verified" in r.stdout


def _copy_golden(tmp_path, names):
    shutil.copytree(os.path.join(GOLDEN, "checkpoints"), tmp_path / "checkpoints")
    for name in names:
        shutil.copytree(os.path.join(GOLDEN, "cases", name), tmp_path / "cases" / name)
    return tmp_path


def test_golden_verify_catches_a_tampered_file(tmp_path):
    g = _copy_golden(tmp_path, ["bert-plain", "pos-embd-add"])
    path = g / "cases" / "bert-plain" / "outputs.npz"
    outputs = golden.read_npz(str(path))
    outputs["Encoder-2-FeedForward"] = outputs["Encoder-2-FeedForward"] + 1e-3
    golden.write_npz(str(path), outputs)
    r = refimpl("golden", "verify", "--golden", g)
    assert r.returncode == 1
    assert "FAIL bert-plain" in r.stdout and "outputs.npz: sha256" in r.stdout and "was changed" in r.stdout
    assert "ok   pos-embd-add" in r.stdout and "1 of 2 golden cases verified" in r.stdout


def test_golden_verify_recomputes_when_hashes_match(tmp_path):
    """A changed expected value with an updated hash: the recomputation catches it by name."""
    g = _copy_golden(tmp_path, ["bert-plain"])
    folder = g / "cases" / "bert-plain"
    outputs = golden.read_npz(str(folder / "outputs.npz"))
    outputs["Encoder-2-FeedForward-Norm"][0, 3, 5] += 1e-4
    case = golden.read_case(str(folder))
    inputs = golden.read_npz(str(folder / "inputs.npz"))
    golden.write_case(str(folder), case, inputs, outputs)
    r = refimpl("golden", "verify", "--golden", g)
    assert r.returncode == 1
    assert "first divergence: Encoder-2-FeedForward-Norm" in r.stdout
    assert "(0, 3, 5)" in r.stdout


def test_golden_verify_reports_malformed_case(tmp_path):
    g = _copy_golden(tmp_path, ["pos-embd-add"])
    (g / "cases" / "pos-embd-add" / "case.json").write_text("{not json")
    r = refimpl("golden", "verify", "--golden", g)
    assert r.returncode == 1 and "malformed JSON" in r.stdout
    r = refimpl("golden", "verify", "--golden", tmp_path / "nowhere")
    assert r.returncode == 2 and "no cases/ folder" in r.stderr


def test_compare_with_itself_exits_0():
    case = os.path.join(GOLDEN, "cases", "bert-padding-two-segments")
    r = refimpl("compare", case, case)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "first divergence: none" in r.stdout
    r = refimpl("compare", case, os.path.join(case, "outputs.npz"))
    assert r.returncode == 0


def test_compare_names_the_first_divergence(tmp_path):
    """A port that goes wrong in layer 2's attention: everything after it differs too, and the
    report names the first one in network order."""
    case = os.path.join(GOLDEN, "cases", "bert-padding-two-segments")
    expected = golden.read_npz(os.path.join(case, "outputs.npz"))
    actual = {}
    broken = False
    for name, value in expected.items():
        broken = broken or name == "Encoder-2-MultiHeadSelfAttention/scores"
        actual[name] = (value + 0.01 if broken else value).astype(np.float32)
    golden.write_npz(str(tmp_path / "port.npz"), dict(reversed(list(actual.items()))))  # order of ACTUAL is irrelevant
    r = refimpl("compare", case, tmp_path / "port.npz")
    assert r.returncode == 1
    assert "first divergence: Encoder-2-MultiHeadSelfAttention/scores" in r.stdout
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line and not line.startswith(("#", "name", "first"))}
    assert lines["Encoder-1-FeedForward-Norm"].endswith("ok")
    assert "MISMATCH" in lines["Encoder-2-MultiHeadSelfAttention/scores"]
    # A looser tolerance on the command line accepts it.
    assert refimpl("compare", case, tmp_path / "port.npz", "--atol", "0.02").returncode == 0


def test_compare_float32_port_within_default_tolerance(tmp_path):
    """refimpl's own float32 run is a port that must pass against the float64 golden values."""
    from refimpl import bert
    case = os.path.join(GOLDEN, "cases", "bert-padding-two-segments")
    inputs = golden.read_npz(os.path.join(case, "inputs.npz"))
    trace = {}
    out = bert.forward(bert.load(os.path.join(GOLDEN, "checkpoints", "bert-tiny")), inputs["token_ids"],
                       inputs["segment_ids"], inputs["attention_mask"], dtype=np.float32, trace=trace)
    trace.update(sequence=out.sequence, pooled=out.pooled, mlm_logits=out.mlm_logits, nsp_logits=out.nsp_logits)
    golden.write_npz(str(tmp_path / "f32.npz"), trace)
    r = refimpl("compare", case, tmp_path / "f32.npz")
    assert r.returncode == 0, r.stdout


def test_compare_unusable_input(tmp_path):
    case = os.path.join(GOLDEN, "cases", "bert-plain")
    expected = golden.read_npz(os.path.join(case, "outputs.npz"))
    partial = {k: v for k, v in list(expected.items())[:3]}
    partial["Embedding-Segment"] = partial["Embedding-Segment"][:, :-1]
    golden.write_npz(str(tmp_path / "partial.npz"), partial)
    r = refimpl("compare", case, tmp_path / "partial.npz")
    # another shape is a divergence (exit 1), named even though most names are missing
    assert r.returncode == 1, r.stdout + r.stderr
    assert "first divergence: Embedding-Segment" in r.stdout
    assert "ACTUAL has shape (1, 7, 32), EXPECTED (1, 8, 32)" in r.stdout
    assert "not checked, missing from ACTUAL" in r.stdout
    del partial["Embedding-Segment"]
    golden.write_npz(str(tmp_path / "partial.npz"), partial)
    r = refimpl("compare", case, tmp_path / "partial.npz")
    assert r.returncode == 2 and "--allow-missing" in r.stderr and "first divergence: none" in r.stdout
    r = refimpl("compare", case, tmp_path / "partial.npz", "--allow-missing")
    assert r.returncode == 0 and "# 2 compared" in r.stdout
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    r = refimpl("compare", case, tmp_path / "junk.npz")
    assert r.returncode == 2 and "not an .npz file" in r.stderr
    r = refimpl("compare", case, tmp_path / "absent.npz")
    assert r.returncode == 2 and "no such file" in r.stderr


def test_bad_arguments_are_usage_errors():
    case = os.path.join(GOLDEN, "cases", "bert-plain")
    for args, message in ((["compare", case], "the following arguments are required: actual"),
                          (["compare", case, case, "--rtol", "-1"], "--rtol must be >= 0"),
                          (["compare", case, case, "--atol", "x"], "invalid float value"),
                          (["golden"], "the following arguments are required: ACTION"),
                          (["frobnicate"], "invalid choice")):
        r = refimpl(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)


def test_case_json_records_provenance():
    for folder in CASES:
        case = golden.read_case(folder)
        assert {"numpy", "refimpl"} <= set(case["versions"])
        assert set(case["files"]) == {"inputs.npz", "outputs.npz"}
        for override in case["tolerances"]["overrides"]:
            assert override.get("reason"), f"{case['name']}: tolerance override without a reason"
        if case["checkpoint"]:
            assert case["checkpoint_sha256"]
        json.dumps(case)


# --- refimpl run ---------------------------------------------------------------------------
def test_run_bert_default_matches_golden(tmp_path):
    r = refimpl("run", "--model", "bert", "--out", tmp_path / "all.npz", "--plot-attention", tmp_path / "att.png")
    assert r.returncode == 0, r.stderr
    assert "golden: matches case bert-run-default" in r.stdout
    assert "Encoder-3-FeedForward-Norm" in r.stdout and "max |x|" in r.stdout
    written = golden.read_npz(str(tmp_path / "all.npz"))
    assert "Encoder-1-MultiHeadSelfAttention/prob" in written and written["sequence"].shape == (1, 10, 32)
    png = (tmp_path / "att.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    r = refimpl("run", "--model", "bert", "--dtype", "float32")
    assert r.returncode == 0 and "golden: matches case bert-run-default" in r.stdout


def test_run_default_is_xlnet_and_matches_golden(tmp_path):
    r = refimpl("run", "--out", tmp_path / "x.npz", "--plot-attention", tmp_path / "x.png")
    assert r.returncode == 0, r.stderr
    assert "refimpl run: xlnet" in r.stdout and "golden: matches case xlnet-run-default" in r.stdout
    assert "FeedForward-Normal-3" in r.stdout
    written = golden.read_npz(str(tmp_path / "x.npz"))
    assert {"Attention-1/prob", "Attention-1/bd", "content", "lm_logits"} <= set(written)
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = refimpl("run", "--attn-type", "uni", "--mem-len", "4", "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    assert "mems/2" in r.stdout and "not the default example" in r.stdout


def test_run_with_other_tokens_says_there_is_no_golden():
    r = refimpl("run", "--model", "bert", "--tokens", "2 5 6 3; 2 7 8 3", "--segments", "0 0 1 1; 0 0 1 1")
    assert r.returncode == 0, r.stderr
    assert "tokens (2, 4)" in r.stdout and "not the default example" in r.stdout


def test_run_bad_arguments():
    for args, message in ((["--model", "bert", "--tokens", "1 x"], "--tokens: 'x' is not an integer"),
                          (["--model", "bert", "--tokens", "1 2; 3"], "rows have different lengths"),
                          (["--model", "bert", "--tokens", "1 2", "--segments", "0"], "does not match --tokens"),
                          (["--model", "bert", "--tokens", "1 200"], "token id 200 is out of range"),
                          (["--model", "bert", "--attn-type", "uni"], "XLNet options; BERT takes none"),
                          (["--model", "gpt"], "invalid choice"),
                          (["--tokens", "1 2", "--attn-type", "sideways"], "invalid choice"),
                          (["--tokens", "1 2", "--mem-len", "-1"], "mem_len")):
        r = refimpl("run", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)
