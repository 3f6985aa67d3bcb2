"""The README's trace-name reference is true, and stays true.

The section "## Trace-name reference" of README.md holds two tables (BERT, XLNet): one row per
trace name (patterns with <k>, <i>, <s>, <name>), its content and shape, the original's line, and
the transformers 5.23 module whose output (or input) is the same tensor. This test parses them and
checks, against live runs:
(a) every name refimpl produces (BERT with padding and two segments; XLNet two-stream with
    segment ids, perm_mask, target_mapping and mems; XLNet one-stream with padding and mems;
    an XLNet memory run over two segments) matches exactly one row, every row matches some
    name, the shapes match the rows' shapes, and dialects tf and hf produce the same names;
(b) every row that names a transformers module: a hook on that submodule of a transformers model
    holding the shipped tiny weights (tests/test_transformers_anchor.py's harness) sees, after the
    row's transpose, refimpl's tensor (dialect "hf": exact-erf GELU as transformers' "gelu";
    transformers in float32, refimpl in float64: tolerance "hf-model"). A row naming an input
    is checked with a forward pre-hook; rows "computed inside ...: not a module output" are not
    hooked. Every such row must be checked at least once.
"""
from __future__ import annotations

import inspect
import os
import re

import numpy as np
import pytest

from refimpl import run, xlnet
from tolerances import assert_close

torch = pytest.importorskip("torch", reason="transformers needs PyTorch (the [test] extra)")
pytest.importorskip("transformers", reason="transformers (the [test] extra)")
from test_transformers_anchor import GOLDEN, hf_bert, hf_xlnet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADING = "## Trace-name reference"

MODULE_CELL = re.compile(
    r"^`(?P<path>[^`]+)` (?P<what>output(?:\[(?P<index>\d+)\])?|input(?: `(?P<arg>\w+)`)?)"
    r"(?:, (?P<call>1st|2nd) call)?(?: `(?P<layout>\[[^\]`]*\])`)?")
SHAPE_CELL = re.compile(r"^`\((?P<axes>[^)`]*)\)`")


def reference_text() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert HEADING in readme, f"README.md has no section {HEADING!r}"
    start = readme.index(HEADING)
    end = readme.find("\n## ", start + len(HEADING))
    return readme[start:] if end < 0 else readme[start:end]


def parse_tables(text: str) -> dict[str, list[dict]]:
    """{"BERT": rows, "XLNet": rows}; a row: name, pattern (compiled), axes (tuple or None),
    module (a MODULE_CELL match or None), cells."""
    tables, current = {}, None
    for line in text.splitlines():
        heading = re.match(r"^### (BERT|XLNet)\s*$", line)
        if heading:
            current = tables.setdefault(heading.group(1), [])
            continue
        if current is None or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a table row needs 4 cells (no '|' inside one): {line}"
        name = re.fullmatch(r"`([^`]+)`", cells[0])
        assert name, f"the name cell must be one `name`: {cells[0]}"
        name = name.group(1)
        regex = re.escape(name)
        for placeholder, group in (("<k>", r"(?P<k>[1-9]\d*)"), ("<i>", r"(?P<i>\d+)"),
                                   ("<s>", r"(?P<s>\d+)"), ("<name>", r"(?P<name>.+)")):
            regex = regex.replace(re.escape(placeholder), group)
        shape = SHAPE_CELL.match(cells[1])
        module = MODULE_CELL.match(cells[3])
        assert module or cells[3].startswith(("computed inside", "not a module output")), \
            f"{name}: the transformers cell names neither a module nor 'computed inside': {cells[3]}"
        axes = None if shape is None else tuple(a.strip() for a in shape.group("axes").split(","))
        current.append(dict(name=name, pattern=re.compile(regex), cells=cells, module=module,
                            axes=axes))
    assert set(tables) == {"BERT", "XLNet"} and all(tables.values()), f"tables found: {sorted(tables)}"
    return tables


def matching_rows(rows: list[dict], name: str) -> list[tuple[dict, re.Match]]:
    return [(row, m) for row in rows for m in [row["pattern"].fullmatch(name)] if m]


# --- the configurations --------------------------------------------------------------------
BERT_DIMS = dict(B=2, F=10, T=10, N=4, D=32, V=100)


def bert_inputs():
    rng = np.random.default_rng(9)
    ids = rng.integers(1, 100, (2, 10))
    segments = np.array([[0] * 6 + [1] * 4, [0] * 5 + [1] * 3 + [0, 0]])
    mask = np.array([[1] * 10, [1] * 8 + [0, 0]])
    return {"token_ids": ids, "segment_ids": segments, "attention_mask": mask}


def xlnet_configs():
    """(label, inputs without mems, previous tokens, options, dims). The sizes differ from
    each other where possible, so a wrong axis letter in a row shows as a wrong shape."""
    rng = np.random.default_rng(19)
    b, l, m, mlen, mem_len = 2, 7, 3, 5, 6
    perm = np.zeros((b, l, l), np.int64)
    mapping = np.zeros((b, m, l), np.int64)
    for row in range(b):  # a factorisation order; the last m positions in it are the targets
        order = rng.permutation(l)
        rank = np.argsort(order)
        predicted = order[-m:]
        perm[row] = np.isin(np.arange(l), predicted)[None, :] & (rank[None, :] >= rank[:, None])
        mapping[row, np.arange(m), np.sort(predicted)] = 1
    two_stream = dict(token_ids=rng.integers(0, 100, (b, l)), segment_ids=rng.integers(0, 2, (b, l)),
                      perm_mask=perm, target_mapping=mapping)
    dims_a = dict(b=b, l=l, i=l, j=mlen + l, r=mlen + 2 * l, n=4, m=m, D=32, V=100, mlen=mlen,
                  c=min(mem_len, mlen + l))
    b2, l2, mlen2, mem_len2 = 3, 5, 2, 6
    mask = np.ones((b2, l2), np.int64)
    mask[1, :2] = 0  # left padding, as XLNet's fine-tuning inputs
    mask[2, :1] = 0
    one_stream = dict(token_ids=rng.integers(0, 100, (b2, l2)),
                      segment_ids=rng.integers(0, 3, (b2, l2)), attention_mask=mask)
    dims_b = dict(b=b2, l=l2, i=l2, j=mlen2 + l2, r=mlen2 + 2 * l2, n=4, D=32, V=100, mlen=mlen2,
                  c=min(mem_len2, mlen2 + l2))
    return [("two-stream", two_stream, rng.integers(0, 100, (b, mlen)), {"mem_len": mem_len}, dims_a),
            ("one-stream", one_stream, rng.integers(0, 100, (b2, mlen2)), {"mem_len": mem_len2}, dims_b)]


def xlnet_tensors(m, inputs, previous, options, dialect):
    mems = xlnet.forward(m, previous, mem_len=previous.shape[1], dialect=dialect).mems
    return run.named_tensors("xlnet", m, {**inputs, "mems": mems}, options, dialect), mems


def xlnet_segments_run(m):
    rng = np.random.default_rng(29)
    inputs = {"token_ids": rng.integers(0, 100, (2, 2, 4)), "segment_ids": rng.integers(0, 2, (2, 2, 4))}
    return run.compute("xlnet", m, inputs, {"segments": 2, "mem_len": 3}, "tf")


# --- (a) names and shapes --------------------------------------------------------------------
def check_names(rows: list[dict], names: dict, dims: dict | None, used: set, label: str):
    for name, value in names.items():
        found = matching_rows(rows, name)
        assert len(found) == 1, \
            f"{label}: {name!r} matches {len(found)} rows: {[r['name'] for r, _ in found]}"
        row, match = found[0]
        used.add(row["name"])
        if "name" in match.groupdict():  # segment-<s>/<name>: the rest is a name of the table
            check_names([r for r in rows if r is not row], {match.group("name"): value}, None, used, label)
            continue
        if dims is not None and row["axes"] is not None:
            expected = tuple(int(a) if a.isdigit() else dims[a] for a in row["axes"])
            assert value.shape == expected, \
                f"{label}: {name} has shape {value.shape}, the row says {row['axes']} = {expected}"


def test_every_name_matches_exactly_one_row_and_every_row_a_name():
    tables = parse_tables(reference_text())
    b = run.load("bert", os.path.join(GOLDEN, "bert-tiny"))
    m = xlnet.load(os.path.join(GOLDEN, "xlnet-tiny"))
    used = {"BERT": set(), "XLNet": set()}
    names = {d: run.named_tensors("bert", b, bert_inputs(), {}, d) for d in ("tf", "hf")}
    assert list(names["tf"]) == list(names["hf"])
    check_names(tables["BERT"], names["tf"], BERT_DIMS, used["BERT"], "BERT")
    for label, inputs, previous, options, dims in xlnet_configs():
        names = {d: xlnet_tensors(m, inputs, previous, options, d)[0] for d in ("tf", "hf")}
        assert list(names["tf"]) == list(names["hf"]), label
        check_names(tables["XLNet"], names["tf"], dims, used["XLNet"], f"XLNet {label}")
    check_names(tables["XLNet"], xlnet_segments_run(m), None, used["XLNet"], "XLNet segments")
    for model, rows in tables.items():
        unused = [row["name"] for row in rows if row["name"] not in used[model]]
        assert not unused, f"{model} rows that no run produces: {unused}"


# --- (b) the transformers modules ---------------------------------------------------------------
def _detach(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (tuple, list)):
        return tuple(_detach(v) for v in x)
    if hasattr(x, "to_tuple"):  # a transformers ModelOutput
        return tuple(_detach(v) for v in x.to_tuple())
    return x


def resolve(model, path: str):
    """'transformer.layer[2].ff.layer_2' -> that submodule (indices may be negative)."""
    obj = model
    for part in path.split("."):
        name, *indices = re.findall(r"[^\[\]]+", part)
        obj = getattr(obj, name)
        for index in indices:
            obj = obj[int(index)]
    return obj


class Calls:
    """Every call of the hooked submodules: bound inputs and output, in order."""

    def __init__(self, model, paths):
        self.calls = {path: [] for path in paths}
        self._handles = []
        for path in paths:
            module = resolve(model, path)
            signature = inspect.signature(module.forward)

            def pre(mod, args, kwargs, path=path, signature=signature):
                bound = signature.bind(*args, **kwargs).arguments
                self.calls[path].append({"args": args, "inputs": {k: _detach(v) for k, v in bound.items()}})

            def post(mod, args, output, path=path):
                self.calls[path][-1]["output"] = _detach(output)
            self._handles += [module.register_forward_pre_hook(pre, with_kwargs=True),
                              module.register_forward_hook(post)]

    def close(self):
        for handle in self._handles:
            handle.remove()


def module_path(row: dict, match: re.Match) -> str:
    path = row["module"].group("path")
    groups = match.groupdict()
    if "k" in groups:
        path = path.replace("<k-1>", str(int(groups["k"]) - 1))
    if "i" in groups:
        path = path.replace("<i>", groups["i"])
    assert "<" not in path, f"{row['name']}: unresolved placeholder in {path}"
    return path


def observed(row: dict, calls: list) -> np.ndarray:
    spec = row["module"]
    assert calls, f"{row['name']}: {spec.group('path')} never ran"
    if len(calls) > 1:  # a module shared by the two streams
        assert spec.group("call"), \
            f"{row['name']}: {spec.group('path')} ran {len(calls)} times; the row must say which call"
        call = calls[{"1st": 0, "2nd": 1}[spec.group("call")]]
    else:
        call = calls[0]
    if spec.group("what").startswith("output"):
        value = call["output"]
        if spec.group("index") is not None:
            value = value[int(spec.group("index"))]
    elif spec.group("arg"):
        value = call["inputs"][spec.group("arg")]
    else:
        value = next(iter(call["inputs"].values()))
    value = value.double().numpy()
    if spec.group("layout"):  # same axis letters as the shape column: transpose to refimpl's order
        theirs = [a.strip() for a in spec.group("layout")[1:-1].split(",")]
        assert row["axes"] is not None and sorted(theirs) == sorted(row["axes"]), \
            f"{row['name']}: layout {theirs} vs shape {row['axes']}"
        value = value.transpose([theirs.index(a) for a in row["axes"]])
    return value


def check_modules(model, rows, ours: dict, forward, label: str, checked: set, skip=lambda row: False):
    """Hook every module the rows name for refimpl's names `ours`, run `forward()` once, compare."""
    wanted = []
    for name in ours:
        found = matching_rows(rows, name)
        if len(found) == 1 and found[0][0]["module"] is not None and not skip(found[0][0]):
            wanted.append((name, found[0][0], module_path(*found[0])))
    calls = Calls(model, sorted({path for _, _, path in wanted}))
    try:
        with torch.no_grad():
            forward()
    finally:
        calls.close()
    for name, row, path in wanted:
        assert_close(observed(row, calls.calls[path]), ours[name], "hf-model", f"{label} {name} ({path})")
        checked.add(row["name"])


def test_transformers_modules_hold_the_same_tensors():
    tables = parse_tables(reference_text())
    checked = set()

    b, bert_model = hf_bert()
    inputs = bert_inputs()
    ours = run.named_tensors("bert", b, inputs, {}, "hf")
    check_modules(bert_model, tables["BERT"], ours,
                  lambda: bert_model(torch.from_numpy(inputs["token_ids"]),
                                     attention_mask=torch.from_numpy(inputs["attention_mask"]),
                                     token_type_ids=torch.from_numpy(inputs["segment_ids"])),
                  "BERT", checked)

    for label, inputs, previous, options, _ in xlnet_configs():
        m, model = hf_xlnet("xlnet-tiny", options["mem_len"], None, "bi", -1, False)
        ours, mems = xlnet_tensors(m, inputs, previous, options, "hf")
        as_float = lambda x: None if x is None else torch.from_numpy(x).float()  # noqa: E731
        two_stream = inputs.get("target_mapping") is not None
        check_modules(
            model, tables["XLNet"], ours,
            lambda: model(torch.from_numpy(inputs["token_ids"]),
                          token_type_ids=torch.from_numpy(inputs["segment_ids"]),
                          attention_mask=as_float(inputs.get("attention_mask")),
                          perm_mask=as_float(inputs.get("perm_mask")),
                          target_mapping=as_float(inputs.get("target_mapping")),
                          mems=[torch.from_numpy(x.transpose(1, 0, 2).astype(np.float32)) for x in mems],
                          use_mems=True),
            f"XLNet {label}", checked,
            skip=lambda row: two_stream and "without target_mapping" in row["cells"][3])

    hooked = {row["name"] for rows in tables.values() for row in rows if row["module"] is not None}
    assert hooked - checked == set(), f"rows naming a module that no run checked: {sorted(hooked - checked)}"
