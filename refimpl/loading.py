"""What the BERT and XLNet loaders share, and the one door to weights: finding the files,
reading a TF checkpoint (refimpl.checkpoint) or a transformers folder (config.json +
model.safetensors, through the model's name table: refimpl.convert), matching the variables
against the official names and shapes, and casting weights to the compute dtype once.
bert.py and xlnet/ call `read_variables` and never a reader themselves."""
from __future__ import annotations

import dataclasses
import json
import os
import weakref
from typing import Callable

import numpy as np

from refimpl import checkpoint, precision

TRANSFORMERS_CONFIG = "config.json"
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def read_json(path: str) -> dict:
    """A JSON config file's object; a ValueError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON config ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def read_config(cls, path: str, exact_keys: bool):
    """The config dataclass `cls` from a JSON file: every field present (and, with exact_keys,
    nothing else), int fields positive integers; a ValueError naming the file otherwise. Checks
    of the other fields' values are the caller's."""
    raw = read_json(path)
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


def is_transformers_folder(path, config_file: str, checkpoint_file: str) -> bool:
    """A directory holding config.json and model.safetensors (or a sharded index), and not the
    official config + checkpoint (a folder holding both is read as the official checkpoint)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    official = (os.path.isfile(os.path.join(path, config_file))
                and os.path.exists(os.path.join(path, checkpoint_file + ".index")))
    return (not official and os.path.isfile(os.path.join(path, TRANSFORMERS_CONFIG))
            and any(os.path.isfile(os.path.join(path, f)) for f in TRANSFORMERS_WEIGHTS))


@dataclasses.dataclass(frozen=True)
class Variables:
    """A model folder's config and weights under the official names, whatever the format."""
    config: object  # the model's config dataclass (BertConfig, XLNetConfig)
    values: dict  # {official name: array}; names outside the name table keep their own names
    source: str  # the weights file or checkpoint prefix
    config_file: str  # bert_config.json / xlnet_config.json, or config.json
    where: str  # heading of match_variables' error: "<weights> does not match <config>"
    aliases: dict = dataclasses.field(default_factory=dict)  # official -> transformers names
    tied_copies: frozenset = frozenset()  # transformers' tied duplicates in `values`, not used

    def skippable(self, model_skippable: Callable[[str], bool]) -> Callable[[str], bool]:
        """The model's skippable() plus the tied copies of a transformers folder."""
        return lambda name: name in self.tied_copies or model_skippable(name)


def weights_dtype_for_load(dtype) -> np.dtype | None:
    """A load's dtype argument (None, "float32", "float64" or a NumPy float dtype) checked."""
    if dtype is None:
        return None
    try:
        checked, emulated = precision.resolve(dtype)  # the forwards' reading of a dtype
    except ValueError:
        emulated = "unknown"
    if emulated:
        raise ValueError(f"dtype {dtype!r}: expected None (the checkpoint's), float32 or float64; "
                         "emulated bfloat16/float16 forwards round float32 weights themselves")
    return checked


def read_variables(path, model: str, config_file: str, checkpoint_file: str,
                   read_config: Callable[[str], object], verify: bool = True,
                   dtype=None) -> Variables:
    """The config and {official name: array} of a model directory or checkpoint prefix
    (`config_file` + `checkpoint_file`.*, read with `read_config` and refimpl.checkpoint), or of
    a transformers folder (config.json + model.safetensors, mapped back through the name table
    of `model`, "bert" or "xlnet"). Matching the names is the caller's (match_variables).
    dtype: floating-point weights converted to it (weights_dtype_for_load) as they are read."""
    dtype = weights_dtype_for_load(dtype)
    if is_transformers_folder(path, config_file, checkpoint_file):
        from refimpl import convert  # safetensors is imported there, only when needed
        v = convert.read_transformers(path, model)
        if dtype is not None:
            v = dataclasses.replace(v, values={name: value.astype(dtype, copy=False)
                                               if value.dtype.kind == "f" else value
                                               for name, value in v.values.items()})
        return v
    config_path, ckpt_path = find_files(path, config_file, checkpoint_file)
    config = read_config(config_path)
    values = checkpoint.load_checkpoint(ckpt_path, verify=verify, float_dtype=dtype)
    return Variables(config, values, os.fspath(ckpt_path), config_file,
                     f"{ckpt_path} does not match {config_path}")


def match_variables(values: dict, expected: dict, optional_parts, skippable, config_file: str,
                    where: str, aliases: dict | None = None) -> tuple[dict, tuple]:
    """Check checkpoint `values` against `expected` ({part: {name: shape}}).

    Returns ({part: {name: array}}, skipped names). An optional part may be absent as a whole
    (then {}); anything else missing, any name neither expected nor `skippable`, a wrong shape
    or a non-float dtype is collected, and all of them raise one ValueError listing the names.
    `aliases` {official name: text} adds where a name comes from (a transformers folder's names)."""
    aliases = aliases or {}
    shown = lambda name: f"{name} ({aliases[name]})" if name in aliases else name  # noqa: E731
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
            problems.append(f"missing {part} variables: {', '.join(map(shown, missing))}")
        for name, shape in names.items():
            if name in values and tuple(values[name].shape) != shape:
                problems.append(f"{shown(name)} has shape {tuple(values[name].shape)}, expected "
                                f"{shape} from {config_file}")
            elif name in values and values[name].dtype.kind != "f":
                problems.append(f"{shown(name)} has dtype {values[name].dtype}, expected floating point")
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
    and cached per model and dtype. "bfloat16" / "float16": float32 arrays holding the weights
    rounded to that format (refimpl/precision.py)."""
    compute, fmt = precision.resolve(dtype)
    key = fmt or compute.name
    per_model = _CAST_CACHE.setdefault(model, {})
    if key not in per_model:
        def conv(value):
            if isinstance(value, dict):
                return {k: _rounded(v.astype(compute, copy=False), fmt) for k, v in value.items()}
            if isinstance(value, tuple) and value and isinstance(value[0], dict):
                return tuple(conv(v) for v in value)
            return value

        per_model[key] = dataclasses.replace(
            model, **{f.name: conv(getattr(model, f.name)) for f in dataclasses.fields(model)})
    return per_model[key]


def _rounded(value: np.ndarray, fmt: str | None) -> np.ndarray:
    return value if fmt is None else precision.ROUND[fmt](value)
