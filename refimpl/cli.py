"""The `refimpl` command.

  refimpl run [--model xlnet|bert] [--checkpoint DIR] [--tokens ..] [--segments ..] [--out F.npz]
              [--plot-attention F.png] ...   run a model, print a per-layer table, check golden
  refimpl inspect PATH [--values NAME]        list a checkpoint's variables, or summarise one
  refimpl compare EXPECTED ACTUAL [--rtol R --atol A] [--allow-missing]
                                              compare named tensors (.npz or golden case folders)
  refimpl golden verify [--golden DIR]        check hashes and recompute every golden case

Exit codes: 0 success, 1 a failed check (unreadable checkpoint, tensors outside tolerance),
2 bad usage or unusable input (argparse's convention; missing names, shape mismatches).
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys

import numpy as np

from refimpl import checkpoint, golden


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


def cmd_run(args, parser) -> int:
    from refimpl import run
    golden_dir = golden.default_golden_dir()
    default = run.DEFAULTS[args.model]
    checkpoint_dir = args.checkpoint or os.path.join(golden_dir, run.DEFAULT_CHECKPOINTS[args.model])
    try:
        tokens = run.parse_ids(args.tokens or default.tokens, "--tokens")
        segments_text = args.segments if args.segments is not None else (None if args.tokens else default.segments)
        segments = None if segments_text is None else run.parse_ids(segments_text, "--segments")
        if segments is not None and segments.shape != tokens.shape:
            raise ValueError(f"--segments: shape {segments.shape} does not match --tokens {tokens.shape}")
    except ValueError as e:
        parser.error(str(e))
    try:
        options = {} if args.model == "bert" else {"attn_type": args.attn_type, "mem_len": args.mem_len}
        if args.model == "bert" and (args.attn_type != "bi" or args.mem_len is not None):
            raise ValueError("--attn-type and --mem-len apply to --model xlnet only")
        inputs = {"token_ids": tokens, "segment_ids": segments}
        tensors = run.named_tensors(args.model, checkpoint_dir, inputs, options, args.dialect, np.dtype(args.dtype))
    except checkpoint.CheckpointError:  # a ValueError too, but a broken file (exit 1, in main)
        raise
    except ValueError as e:  # bad input to the model: the message names the value
        parser.error(str(e))
    print(f"refimpl run: {args.model} {checkpoint_dir}, tokens {tokens.shape}, dialect {args.dialect}, "
          f"{args.dtype}" + (f", attn_type {args.attn_type}" if args.model == "xlnet" else ""))
    print(run.table(tensors, fine=args.all))
    is_default = (args.tokens is None and args.segments is None and args.checkpoint is None
                  and args.dialect == "tf" and args.attn_type == "bi" and args.mem_len is None)
    if is_default:
        print(run.golden_check(args.model, tensors, golden_dir))
    else:
        print("golden: not the default example, nothing to compare with (see refimpl compare)")
    if args.out:
        golden.write_npz(args.out, tensors)
        print(f"wrote {len(tensors)} tensors to {args.out}")
    if args.plot_attention:
        labels = [str(t) for t in tokens[0]]
        try:
            run.plot_attention(tensors, args.plot_attention,
                               f"{args.model} attention probabilities (batch item 0), {os.path.basename(checkpoint_dir)}",
                               labels)
        except ValueError as e:
            parser.error(str(e))
        print(f"wrote attention plot to {args.plot_attention}")
    return 0


def cmd_compare(args, parser) -> int:
    try:
        expected, tolerances = golden.read_tensors(args.expected)
        actual, _ = golden.read_tensors(args.actual)
    except golden.GoldenError as e:
        print(f"refimpl compare: error: {e}", file=sys.stderr)
        return 2
    report = golden.compare(expected, actual, tolerances, args.rtol, args.atol, args.allow_missing)
    print(report.format())
    if not report.rows:
        print("refimpl compare: error: no tensor names in common between EXPECTED and ACTUAL",
              file=sys.stderr)
    elif report.unusable:
        names = ", ".join(r.name for r in report.unusable[:10])
        print(f"refimpl compare: error: {len(report.unusable)} tensors unusable ({names}); "
              "missing names can be skipped with --allow-missing", file=sys.stderr)
    return report.exit_code


def cmd_golden_verify(args, parser) -> int:
    golden_dir = args.golden or golden.default_golden_dir()
    try:
        folders = golden.case_folders(golden_dir)
    except golden.GoldenError as e:
        hint = "" if args.golden else " (pass --golden DIR: the golden/ folder of a refimpl checkout)"
        print(f"refimpl golden verify: error: {e}{hint}", file=sys.stderr)
        return 2
    failed = 0
    for folder in folders:
        name = os.path.basename(folder)
        try:
            problems, report = golden.verify_case(folder, golden_dir)
        except (golden.GoldenError, checkpoint.CheckpointError, ValueError) as e:
            problems, report = [str(e)], None
        if problems or report.exit_code:
            failed += 1
            print(f"FAIL {name}")
            for problem in problems:
                print(f"     {problem}")
            if report is not None:
                print("\n".join("     " + line for line in report.format(problems_only=True).splitlines()))
        else:
            worst = max(report.rows, key=lambda r: r.max_abs)
            print(f"ok   {name}: {len(report.rows)} tensors within tolerance "
                  f"(max abs error {worst.max_abs:.2g} in {worst.name})")
    print(f"{len(folders) - failed} of {len(folders)} golden cases verified in {golden_dir}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refimpl", description="NumPy reference of BERT and XLNet.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runp = sub.add_parser("run", help="run a model on an example; per-layer table; golden check",
                          description="Run XLNet or BERT on a small example (default: the shipped "
                          "xlnet-tiny on a fixed example, checked against its golden case).")
    runp.add_argument("--model", choices=["xlnet", "bert"], default="xlnet")
    runp.add_argument("--checkpoint", metavar="DIR", help="model directory (default: the shipped tiny one)")
    runp.add_argument("--tokens", help='token ids, e.g. "17 25 33" (rows separated by ";")')
    runp.add_argument("--segments", help="segment ids, same shape as --tokens (default: all 0)")
    runp.add_argument("--attn-type", choices=["bi", "uni"], default="bi", help="XLNet attention type")
    runp.add_argument("--mem-len", type=int, metavar="N", help="XLNet: memory length to return")
    runp.add_argument("--dialect", choices=["tf", "keras", "hf"], default="tf")
    runp.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    runp.add_argument("--out", metavar="FILE.npz", help="write every named tensor (network order)")
    runp.add_argument("--plot-attention", metavar="FILE.png", help="heatmaps of attention (needs [plot])")
    runp.add_argument("--all", action="store_true", help="list the finer tensors (scores, probabilities) too")
    runp.set_defaults(func=cmd_run)

    inspect = sub.add_parser("inspect", help="list a TensorFlow checkpoint's variables")
    inspect.add_argument("path", help="checkpoint prefix (.../model.ckpt), .index file or directory")
    inspect.add_argument("--values", metavar="NAME", help="summarise the values of one variable")
    inspect.set_defaults(func=cmd_inspect)

    comp = sub.add_parser("compare", help="compare named tensors against expected ones, in network order",
                          description="Compare ACTUAL's tensors with EXPECTED's by name, walking "
                          "EXPECTED in its (network) order; print a table and the first divergence. "
                          "Exit 0 all within tolerance, 1 a mismatch, 2 unusable input.")
    comp.add_argument("expected", help=".npz of named tensors, or a golden case folder (its tolerances apply)")
    comp.add_argument("actual", help=".npz of named tensors, or a golden case folder")
    comp.add_argument("--rtol", type=float, help="relative tolerance for every tensor (default: per dtype)")
    comp.add_argument("--atol", type=float, help="absolute tolerance for every tensor (default: per dtype)")
    comp.add_argument("--allow-missing", action="store_true",
                      help="compare only the names ACTUAL has (default: a missing name is an error)")
    comp.set_defaults(func=cmd_compare)

    gold = sub.add_parser("golden", help="golden cases")
    gold_sub = gold.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    verify = gold_sub.add_parser("verify", help="check hashes and recompute every case within tolerance")
    verify.add_argument("--golden", metavar="DIR", help="golden folder (default: the repository's golden/)")
    verify.set_defaults(func=cmd_golden_verify)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    sub = parser._subparsers._group_actions[0].choices[args.command]
    for negative in ("rtol", "atol"):
        if getattr(args, negative, None) is not None and getattr(args, negative) < 0:
            sub.error(f"--{negative} must be >= 0, got {getattr(args, negative)}")
    try:
        return args.func(args, sub)
    except checkpoint.CheckpointError as e:
        print(f"refimpl {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
