"""What the BERT and XLNet loaders share: finding the files, matching checkpoint variables
against the official names and shapes, and casting weights to the compute dtype once."""
from __future__ import annotations

import dataclasses
import json
import os
import weakref

import numpy as np


def read_config(cls, path: str, exact_keys: bool):
    """The config dataclass `cls` from a JSON file: every field present (and, with exact_keys,
    nothing else), int fields positive integers; a ValueError naming the file otherwise. Checks
    of the other fields' values are the caller's."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON config ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    missing = [name for name in fields if name not in raw]
    unknown = sorted(set(raw) - set(fields)) if exact_keys else []
    if missing or unknown:
        raise ValueError(f"{path}: missing config keys [{', '.join(missing)}], unknown keys "
                         f"[{', '.join(unknown)}]; expected {'exactly ' if exact_keys else ''}"
                         f"{', '.join(fields)}")
    for name, kind in fields.items():
        value = raw[name]
        if kind in (int, "int") and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{path}: {name} {value!r}, expected a positive integer")
    return cls(**{name: raw[name] for name in fields})


def find_files(path, config_file: str, checkpoint_file: str) -> tuple[str, str]:
    """(config json path, checkpoint path) for a model directory or a checkpoint prefix."""
    path = os.fspath(path)
    directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
    config = os.path.join(directory, config_file)
    if not os.path.isfile(config):
        raise ValueError(f"no {config_file} in {directory}: a model directory holds "
                         f"{config_file} and {checkpoint_file}.*")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, checkpoint_file + ".index")):
        return config, os.path.join(path, checkpoint_file)
    return config, path


def match_variables(values: dict, expected: dict, optional_parts, skippable, config_file: str,
                    where: str) -> tuple[dict, tuple]:
    """Check checkpoint `values` against `expected` ({part: {name: shape}}).

    Returns ({part: {name: array}}, skipped names). An optional part may be absent as a whole
    (then {}); anything else missing, any name neither expected nor `skippable`, a wrong shape
    or a non-float dtype is collected, and all of them raise one ValueError listing the names."""
    known = {name for part in expected.values() for name in part}
    unexpected = sorted(n for n in values if n not in known and not skippable(n))
    skipped = tuple(sorted(n for n in values if n not in known and skippable(n)))
    problems = [f"unexpected variables: {', '.join(unexpected)}"] if unexpected else []
    present = {}
    for part, names in expected.items():
        missing = [n for n in names if n not in values]
        if part in optional_parts and len(missing) == len(names):
            present[part] = {}
            continue
        if missing:
            problems.append(f"missing {part} variables: {', '.join(missing)}")
        for name, shape in names.items():
            if name in values and tuple(values[name].shape) != shape:
                problems.append(f"{name} has shape {tuple(values[name].shape)}, expected {shape} "
                                f"from {config_file}")
            elif name in values and values[name].dtype.kind != "f":
                problems.append(f"{name} has dtype {values[name].dtype}, expected floating point")
        present[part] = {n: np.asarray(values[n]) for n in names if n in values}
    if problems:
        raise ValueError(f"{where}:\n  " + "\n  ".join(problems))
    return present, skipped


def strip_scope(part: dict, scope: str) -> dict:
    """{"scope/a/b": x} -> {"a/b": x}."""
    return {name[len(scope) + 1:]: value for name, value in part.items()}


_CAST_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cast_weights(model, dtype):
    """The model (a dataclass) with every weight dict, and tuple of dicts, in `dtype`; cast once
    and cached per model and dtype."""
    dtype = np.dtype(dtype)
    per_model = _CAST_CACHE.setdefault(model, {})
    if dtype not in per_model:
        def conv(value):
            if isinstance(value, dict):
                return {k: v.astype(dtype) for k, v in value.items()}
            if isinstance(value, tuple) and value and isinstance(value[0], dict):
                return tuple(conv(v) for v in value)
            return value

        per_model[dtype] = dataclasses.replace(
            model, **{f.name: conv(getattr(model, f.name)) for f in dataclasses.fields(model)})
    return per_model[dtype]
