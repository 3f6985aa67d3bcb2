"""The `refimpl` command.

  refimpl inspect PATH [--values NAME]   list a checkpoint's variables, or summarise one

Exit codes: 0 success, 1 the checkpoint cannot be read, 2 bad usage (argparse's convention).
"""
from __future__ import annotations

import argparse
import difflib
import sys

import numpy as np

from refimpl import checkpoint


def _summary(name: str, value: np.ndarray) -> str:
    lines = [f"name:  {name}", f"dtype: {value.dtype}", f"shape: {tuple(value.shape)}",
             f"size:  {value.size}"]
    if value.dtype != object and value.size and value.dtype.kind in "biufc":
        x = value.astype(np.complex128 if value.dtype.kind == "c" else np.float64)
        if value.dtype.kind != "c":
            lines += [f"min:   {x.min():.6g}", f"max:   {x.max():.6g}"]
        lines += [f"mean:  {x.mean():.6g}", f"std:   {x.std():.6g}"]
    flat = value.reshape(-1)
    head = ", ".join(repr(v) if value.dtype == object else f"{v:.6g}" if value.dtype.kind in "fc"
                     else str(v) for v in flat[:8])
    lines.append(f"first: [{head}{', ...' if flat.size > 8 else ''}]")
    return "\n".join(lines)


def cmd_inspect(args, parser) -> int:
    variables = checkpoint.list_variables(args.path)
    if args.values is None:
        width = max((len(n) for n in variables), default=4)
        print(f"{'name':<{width}}  {'dtype':<10}  shape")
        for name, (dtype, shape) in variables.items():
            print(f"{name:<{width}}  {dtype:<10}  {list(shape)}")
        total = sum(int(np.prod(s)) for _, s in variables.values())
        print(f"# {len(variables)} variables, {total} values, prefix {checkpoint.resolve_prefix(args.path)}")
        return 0
    if args.values not in variables:
        close = difflib.get_close_matches(args.values, list(variables), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        parser.error(f"--values: no variable {args.values!r} in {args.path}{hint}")
    values = checkpoint.load_checkpoint(args.path)
    print(_summary(args.values, values[args.values]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refimpl", description="NumPy reference of BERT and XLNet.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    inspect = sub.add_parser("inspect", help="list a TensorFlow checkpoint's variables")
    inspect.add_argument("path", help="checkpoint prefix (.../model.ckpt), .index file or directory")
    inspect.add_argument("--values", metavar="NAME", help="summarise the values of one variable")
    inspect.set_defaults(func=cmd_inspect)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    sub = parser._subparsers._group_actions[0].choices[args.command]
    try:
        return args.func(args, sub)
    except checkpoint.CheckpointError as e:
        print(f"refimpl {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
