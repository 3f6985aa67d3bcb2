"""refimpl.checkpoint against TensorFlow's own reader, on checkpoints written by TensorFlow.

Every comparison is exact (bit for bit for floats): the reader copies bytes, it computes nothing.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import string
import subprocess
import sys
import tempfile
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import checkpoint as ckpt
from refimpl import crc32c

tf_writers = pytest.importorskip("tf_writers", reason="TensorFlow (the [test] extra) is needed to write checkpoints")
import bundle_tools  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "golden", "checkpoints")

ALL_DTYPES = list(tf_writers.TF_DTYPES)
SAVER_DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool"]


# --- strategies ----------------------------------------------------------------------------
scope = st.text(alphabet=string.ascii_lowercase + string.digits + "_", min_size=1, max_size=6).filter(
    lambda s: not s[0].isdigit() and not s.startswith("_"))
names = st.lists(scope, min_size=1, max_size=4).map("/".join)


def values_of(dtype_name: str, shape) -> st.SearchStrategy:
    if dtype_name == "string":
        return hnp.arrays(object, shape, elements=st.binary(max_size=12))
    if dtype_name == "bfloat16":  # drawn as float32, rounded to bfloat16 by TensorFlow
        return hnp.arrays(np.float32, shape, elements=st.floats(-1e6, 1e6, width=32))
    return hnp.arrays(np.dtype(dtype_name), shape)


@st.composite
def variable_sets(draw, dtypes=ALL_DTYPES, max_vars=6, max_side=4):
    chosen = draw(st.lists(names, min_size=1, max_size=max_vars, unique=True))
    chosen = [n for n in chosen if not any(o.startswith(n + "/") for o in chosen if o != n)]
    out = {}
    for name in chosen:
        dtype_name = draw(st.sampled_from(dtypes))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side))
        out[name] = (dtype_name, draw(values_of(dtype_name, shape)))
    return out


@contextmanager
def time_limit(seconds: int):
    """Fail instead of hanging: the reader must never loop on corrupt input."""
    def _raise(signum, frame):
        raise TimeoutError(f"reader did not finish within {seconds} s")
    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def assert_matches_tf(path: str, dtype_of=None):
    """load_checkpoint/list_variables equal TensorFlow's reader exactly."""
    tf_values, tf_listed = tf_writers.read_tf(path)
    ours = ckpt.load_checkpoint(path)
    listed = ckpt.list_variables(path)
    assert listed == tf_listed
    assert sorted(ours) == sorted(tf_values)
    for name, value in tf_values.items():
        dtype_name = listed[name][0]
        assert tf_writers.same_values(value, ours[name], dtype_name), (name, dtype_name, value, ours[name])
    return ours


# --- against TensorFlow --------------------------------------------------------------------
@given(variables=variable_sets())
def test_raw_savev2_every_dtype(variables):
    with tempfile.TemporaryDirectory() as d:
        assert_matches_tf(tf_writers.save_raw(variables, os.path.join(d, "raw")))


@settings(max_examples=15)
@given(variables=variable_sets(dtypes=SAVER_DTYPES), shards=st.integers(1, 3))
def test_v1_saver_single_and_sharded(variables, shards):
    with tempfile.TemporaryDirectory() as d:
        prefix = tf_writers.save_saver(variables, os.path.join(d, "model.ckpt"), shards=shards)
        ours = assert_matches_tf(prefix)
        assert "global_step" in ours
        data_files = [f for f in os.listdir(d) if ".data-" in f]
        assert len(data_files) == bundle_tools.read_raw(prefix)[0].num_shards
        assert (len(data_files) > 1) == (shards > 1)


@settings(max_examples=15)
@given(data=st.data())
def test_partitioned_variables_are_reassembled(data):
    rows = data.draw(st.integers(2, 9))
    cols = data.draw(st.integers(1, 5))
    axis = data.draw(st.sampled_from([0, 1]))
    parts = data.draw(st.integers(2, (rows, cols)[axis])) if (rows, cols)[axis] >= 2 else 1
    assume(parts >= 2)
    value = data.draw(hnp.arrays(np.float32, (rows, cols), elements=st.floats(-10, 10, width=32)))
    others = data.draw(variable_sets(dtypes=SAVER_DTYPES, max_vars=2))
    others.pop("part/w", None)
    variables = {**others, "part/w": ("float32", value)}
    variables = {k: v for k, v in variables.items() if not k.startswith("part/w/") and k != "part"}
    with tempfile.TemporaryDirectory() as d:
        prefix = tf_writers.save_saver(variables, os.path.join(d, "model.ckpt"),
                                       partitioned={"part/w": (parts, axis)})
        ours = assert_matches_tf(prefix)
        np.testing.assert_array_equal(ours["part/w"], value)
        _, raw = bundle_tools.read_raw(prefix)
        assert sum(1 for _, e in raw if e.slices) == 1  # really stored as slices


@settings(max_examples=15)
@given(variables=variable_sets(dtypes=["float32", "float16", "int64", "string", "bfloat16"], max_vars=3))
def test_tf2_checkpoint(variables):
    with tempfile.TemporaryDirectory() as d:
        path = tf_writers.save_tf2(variables, os.path.join(d, "ckpt"))
        ours = assert_matches_tf(path)
        assert "_CHECKPOINTABLE_OBJECT_GRAPH" in ours
        assert all(k.endswith("/.ATTRIBUTES/VARIABLE_VALUE") for k in ours
                   if k not in ("_CHECKPOINTABLE_OBJECT_GRAPH",))


@settings(max_examples=10)
@given(variables=variable_sets(max_vars=5))
def test_big_endian_bundle_reads_the_same_values(variables):
    with tempfile.TemporaryDirectory() as d:
        little = tf_writers.save_raw(variables, os.path.join(d, "le"))
        big = os.path.join(d, "be")
        bundle_tools.to_big_endian(little, big)
        assert bundle_tools.read_raw(big)[0].big_endian
        le_values, be_values = ckpt.load_checkpoint(little), ckpt.load_checkpoint(big)
        tf_values, _ = tf_writers.read_tf(little)
        for name, (dtype_name, _) in variables.items():
            assert be_values[name].dtype.isnative or be_values[name].dtype == object
            assert tf_writers.same_values(tf_values[name], be_values[name], dtype_name), name
            assert tf_writers.same_values(tf_values[name], le_values[name], dtype_name), name


def test_shipped_checkpoints_match_tf():
    for prefix in ("bert-tiny/bert_model.ckpt", "xlnet-tiny/xlnet_model.ckpt",
                   "xlnet-tiny-tied/xlnet_model.ckpt"):
        ours = assert_matches_tf(os.path.join(GOLDEN, prefix))
        assert "global_step" in ours


# --- paths ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    variables = {"a/w": ("float32", np.arange(6, dtype=np.float32).reshape(2, 3)),
                 "b": ("string", np.array([b"x", b"yz"], dtype=object))}
    return tf_writers.save_saver(variables, str(d / "model.ckpt"))


def test_directory_with_state_file_from_another_machine(small_ckpt, tmp_path):
    for f in os.listdir(os.path.dirname(small_ckpt)):
        shutil.copy(os.path.join(os.path.dirname(small_ckpt), f), tmp_path)
    (tmp_path / "other.index").write_bytes(b"")  # two *.index files: the state file decides
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "/home/someone/train/model.ckpt"\n'
        'all_model_checkpoint_paths: "/home/someone/train/model.ckpt"\n')
    assert ckpt.resolve_prefix(tmp_path) == str(tmp_path / "model.ckpt")
    np.testing.assert_array_equal(ckpt.load_checkpoint(tmp_path)["a/w"], np.arange(6).reshape(2, 3))


def test_path_forms(small_ckpt):
    d = os.path.dirname(small_ckpt)
    for path in (small_ckpt, small_ckpt + ".index", d):
        assert ckpt.list_variables(path) == {"a/w": ("float32", (2, 3)), "b": ("string", (2,)),
                                             "global_step": ("int64", ())}


def test_path_errors(small_ckpt, tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nothing")
    with pytest.raises(ckpt.CheckpointError, match="no TensorFlow checkpoint here"):
        ckpt.load_checkpoint(tmp_path)
    (tmp_path / "x.index").write_bytes(b"")
    (tmp_path / "y.index").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="several checkpoints"):
        ckpt.load_checkpoint(tmp_path)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/far/away/nope.ckpt"\n')
    with pytest.raises(ckpt.CheckpointError, match="nope.ckpt"):
        ckpt.load_checkpoint(tmp_path)


# --- clear errors for bad files ------------------------------------------------------------
def _copy(prefix: str, dest) -> str:
    d = os.path.dirname(prefix)
    for f in os.listdir(d):
        shutil.copy(os.path.join(d, f), dest)
    return os.path.join(str(dest), os.path.basename(prefix))


def test_missing_data_file_and_shard(tmp_path):
    variables = {f"v{i}": ("float32", np.full(3, i, np.float32)) for i in range(3)}
    prefix = tf_writers.save_saver(variables, str(tmp_path / "model.ckpt"), shards=3)
    shards = sorted(f for f in os.listdir(tmp_path) if ".data-" in f)
    assert len(shards) >= 3
    os.remove(tmp_path / shards[1])
    assert "v0" in ckpt.list_variables(prefix)  # listing needs the index only
    with pytest.raises(ckpt.CheckpointError, match=re.escape(shards[1]) + ".*needed for tensor"):
        ckpt.load_checkpoint(prefix)


def test_truncated_files(small_ckpt, tmp_path):
    prefix = _copy(small_ckpt, tmp_path)
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) - 1)
    with pytest.raises(ckpt.CheckpointError, match=r"runs past the end of the file.*truncated"):
        ckpt.load_checkpoint(prefix)
    with open(prefix + ".index", "r+b") as f:
        f.truncate(20)
    with pytest.raises(ckpt.CheckpointError, match="too short for a table footer"):
        ckpt.list_variables(prefix)


def test_bad_magic(small_ckpt, tmp_path):
    prefix = _copy(small_ckpt, tmp_path)
    with open(prefix + ".index", "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0x55]))
    with pytest.raises(ckpt.CheckpointError, match="bad table magic"):
        ckpt.load_checkpoint(prefix)


def test_crc_mismatch_names_the_tensor(small_ckpt, tmp_path):
    prefix = _copy(small_ckpt, tmp_path)
    _, entries = bundle_tools.read_raw(prefix)
    entry = dict(entries)[b"a/w"]
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.seek(entry.offset + 5)
        byte = f.read(1)
        f.seek(entry.offset + 5)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ckpt.CheckpointError, match=r"crc32c mismatch for tensor 'a/w'"):
        ckpt.load_checkpoint(prefix)
    changed = ckpt.load_checkpoint(prefix, verify=False)["a/w"]  # verify=False reads it anyway
    assert not np.array_equal(changed, np.arange(6).reshape(2, 3))


def test_snappy_block_is_refused(small_ckpt, tmp_path):
    header, entries = bundle_tools.read_raw(small_ckpt)
    prefix = _copy(small_ckpt, tmp_path)
    bundle_tools.rewrite_index(small_ckpt, prefix, header, entries, compression=1)
    with pytest.raises(ckpt.CheckpointError, match="Snappy"):
        ckpt.load_checkpoint(prefix)


def test_rewritten_index_still_reads(small_ckpt, tmp_path):
    """The test table writer itself is faithful (so the error tests above mean something)."""
    header, entries = bundle_tools.read_raw(small_ckpt)
    prefix = _copy(small_ckpt, tmp_path)
    bundle_tools.rewrite_index(small_ckpt, prefix, header, entries)
    assert_matches_tf(prefix)


def test_unknown_dtype(small_ckpt, tmp_path):
    import dataclasses
    header, entries = bundle_tools.read_raw(small_ckpt)
    entries = [(k, dataclasses.replace(e, dtype=20) if k == b"a/w" else e) for k, e in entries]
    prefix = _copy(small_ckpt, tmp_path)
    bundle_tools.rewrite_index(small_ckpt, prefix, header, entries)
    with pytest.raises(ckpt.CheckpointError, match=r"'a/w' has unsupported or unknown dtype enum 20"):
        ckpt.list_variables(prefix)


def test_legacy_v1_format_is_named(tmp_path):
    import tensorflow as tf
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        tf1.get_variable("w", initializer=np.ones(3, np.float32))
        saver = tf1.train.Saver(write_version=tf1.train.SaverDef.V1)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, str(tmp_path / "model.ckpt"), write_meta_graph=False, write_state=False)
    for path in (tmp_path / "model.ckpt", tmp_path):
        with pytest.raises(ckpt.CheckpointError, match=r"legacy V1 format.*re-save"):
            ckpt.load_checkpoint(path)


# --- corruption: identical values or CheckpointError, nothing else, never a hang ------------
@pytest.fixture(scope="module")
def corruptible(tmp_path_factory):
    """An index of several blocks (TF's table block size is 256 KiB: ~4000 long names), several
    dtypes, strings, and a variable saved as slices."""
    import tensorflow as tf
    d = tmp_path_factory.mktemp("corrupt")
    rng = np.random.default_rng(7)
    names, specs, tensors = [], [], []
    for i in range(4000):
        names.append(f"scope_{i:04d}/a/rather/long/variable/name/to/fill/several/index/blocks/of/the/table_{i}")
        specs.append("")
        tensors.append(tf.constant(rng.normal(size=(i % 4,)).astype(np.float32)))
    whole = rng.normal(size=(6, 2))
    for start in (0, 2, 4):  # one variable saved as three slices of two rows
        names.append("zz/partitioned")
        specs.append(f"6 2 {start},2:-")
        tensors.append(tf.constant(whole[start:start + 2]))
    for name, value in (("zz/strings", tf.constant([b"abc", b"", b"\x00\xff"])),
                        ("zz/bf16", tf.cast(tf.constant(rng.normal(size=5).astype(np.float32)), tf.bfloat16)),
                        ("zz/int8", tf.constant(np.arange(-3, 3, dtype=np.int8)))):
        names.append(name)
        specs.append("")
        tensors.append(value)
    prefix = str(d / "model.ckpt")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=specs, tensors=tensors)
    raw = open(prefix + ".index", "rb").read()
    _, pos = ckpt._block_handle(raw[-48:], 0, "")
    index_block = ckpt._read_block(raw, ckpt._block_handle(raw[-48:], pos, "")[0], "", True)
    assert len(list(ckpt._block_entries(index_block, ""))) > 1, "want an index of several data blocks"
    baseline = assert_matches_tf(prefix)
    np.testing.assert_array_equal(baseline["zz/partitioned"], whole)
    return prefix, baseline


def _check_corrupted(prefix: str, baseline: dict):
    try:
        with time_limit(20):
            got = ckpt.load_checkpoint(prefix)
    except ckpt.CheckpointError:
        return "error"
    assert sorted(got) == sorted(baseline)
    for name in got:
        assert got[name].dtype == baseline[name].dtype and np.array_equal(got[name], baseline[name]), name
    return "same"


@contextmanager
def crc_implementation(name: str):
    """Run the reader with the C (google-crc32c) or the NumPy crc32c."""
    if name == "c" and not crc32c.HAVE_C:
        pytest.skip("google-crc32c with its C extension is not installed")
    saved = crc32c.HAVE_C
    crc32c.HAVE_C = name == "c"
    try:
        yield
    finally:
        crc32c.HAVE_C = saved


@pytest.mark.parametrize("crc_impl", ["c", "numpy"])
@settings(max_examples=60)
@given(which=st.sampled_from(["index", "data"]), where=st.floats(0, 1, exclude_max=True),
       xor=st.integers(1, 255))
def test_flipped_byte(corruptible, crc_impl, which, where, xor):
    prefix, baseline = corruptible
    with crc_implementation(crc_impl), tempfile.TemporaryDirectory() as d:
        copy = _copy(prefix, d)
        path = copy + (".index" if which == "index" else ".data-00000-of-00001")
        data = bytearray(open(path, "rb").read())
        pos = int(where * len(data))
        data[pos] ^= xor
        open(path, "wb").write(bytes(data))
        _check_corrupted(copy, baseline)


@settings(max_examples=40)
@given(which=st.sampled_from(["index", "data"]), where=st.floats(0, 1, exclude_max=True))
def test_truncated(corruptible, which, where):
    prefix, baseline = corruptible
    with tempfile.TemporaryDirectory() as d:
        copy = _copy(prefix, d)
        path = copy + (".index" if which == "index" else ".data-00000-of-00001")
        with open(path, "r+b") as f:
            f.truncate(int(where * os.path.getsize(path)))
        assert _check_corrupted(copy, baseline) == "error"


# --- crc32c: the NumPy path against the C one and known values -----------------------------
def test_crc32c_known_values():
    assert crc32c.value_numpy(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c.value_numpy(b"") == 0
    assert crc32c.value_numpy(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c.value_numpy(b"\xff" * 32) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of 0xff
    assert crc32c.value_numpy(bytes(range(32))) == 0x46DD794E  # RFC 3720 B.4: incrementing


@given(data=st.binary(max_size=5000), cut=st.integers(0, 5000), masked=st.integers(0, 2**32 - 1))
def test_crc32c_numpy_extend_and_mask(data, cut, masked):
    cut = min(cut, len(data))
    whole = crc32c.value_numpy(data)
    assert crc32c.extend_numpy(crc32c.value_numpy(data[:cut]), data[cut:]) == whole
    assert crc32c.unmask(crc32c.mask(masked)) == masked


@pytest.mark.skipif(not crc32c.HAVE_C, reason="google-crc32c with its C extension is not installed")
@given(data=st.binary(max_size=3000), size=st.sampled_from([0, 1, 63, 64, 65, (1 << 20) + 3]), seed=st.integers(0, 99))
def test_crc32c_numpy_equals_c(data, size, seed):
    import google_crc32c
    big = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    for buf in (data, big.tobytes()):
        assert crc32c.value_numpy(buf) == google_crc32c.value(buf)
        assert crc32c.value(buf) == google_crc32c.value(buf)
    assert crc32c.value(big) == crc32c.value_numpy(big)  # ndarray input, read-only view made inside


# --- import hygiene and the CLI ------------------------------------------------------------
def test_import_refimpl_does_not_import_tensorflow():
    code = ("import sys, refimpl, refimpl.checkpoint, refimpl.cli; "
            "bad = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _refimpl(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "refimpl")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "refimpl.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True)


def test_cli_inspect():
    r = _refimpl("inspect", os.path.join(GOLDEN, "xlnet-tiny"))
    assert r.returncode == 0, r.stderr
    assert "model/transformer/layer_2/rel_attn/q/kernel" in r.stdout and "[32, 4, 8]" in r.stdout
    r = _refimpl("inspect", os.path.join(GOLDEN, "bert-tiny"), "--values", "cls/seq_relationship/output_bias")
    assert r.returncode == 0 and "shape: (2,)" in r.stdout
    r = _refimpl("inspect", os.path.join(GOLDEN, "bert-tiny"), "--values", "cls/seq_relationship/output_bia")
    assert r.returncode == 2 and "did you mean cls/seq_relationship/output_bias" in r.stderr
    r = _refimpl("inspect", "/nonexistent/model.ckpt")  # a missing path is unusable input, as for run
    assert r.returncode == 2 and "/nonexistent/model.ckpt: no such file or directory" in r.stderr
    r = _refimpl()
    assert r.returncode == 2
