"""The `refimpl` command.

  refimpl run [--model xlnet|bert] [--checkpoint DIR] [--tokens ..] [--segments ..]
              [--inputs F.npz] [--out F.npz] [--plot-attention F.png] ...
                                      run a model, print a per-layer table, check golden
  refimpl inspect PATH [--values NAME]  list a checkpoint's variables, or summarise one
  refimpl compare EXPECTED ACTUAL [--budget [P]] [--precision P] [--rtol R --atol A] [--only G] [--skip G]
                  [--allow-missing] [--json F.json] [--plot F.png]
                                      compare named tensors (.npz or golden case folders)
  refimpl golden verify [PATH ...] [--golden DIR]   check hashes and recompute golden cases
  refimpl golden make OUT_DIR --model M --checkpoint DIR --inputs F.npz [...]
                                      a golden case from your own checkpoint and inputs
  refimpl convert CKPT OUT_DIR [--dialect tf|hf]
                                      official TF checkpoint -> transformers folder

Exit codes: 0 success; 1 a failed check (tensors outside tolerance, a golden case that does not
verify, a corrupt checkpoint); 2 bad usage or unusable input (argparse's convention: a missing
file, a malformed .npz, names missing from ACTUAL without --allow-missing).
A closed output pipe (`refimpl compare A B | head -1`) does not change the exit code.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys

import numpy as np

import refimpl
from refimpl.precision import EMULATED
from refimpl import checkpoint, compare, golden

INPUT_NAMES = ("token_ids", "segment_ids", "attention_mask", "perm_mask", "target_mapping", "inp_q",
               "p_mask", "cls_index", "start_positions")
XLNET_ONLY_INPUTS = ("perm_mask", "target_mapping", "inp_q", "p_mask", "cls_index", "start_positions")


class UsageError(Exception):
    """Bad usage or unusable input: exit 2 with the message."""


# --- output that survives a closed pipe ------------------------------------------------------
def emit(text: str = "", file=None) -> None:
    """print, except that a reader who closed the pipe (`| head -1`) silences the rest of the
    output instead of raising: the exit code stays the command's own."""
    stream = file or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # later writes and the final flush go nowhere
        os.close(devnull)


# --- checks done before any work -------------------------------------------------------------
def writable_file(path: str, option: str) -> str:
    """A path we can create or overwrite, checked before a long run (not after it)."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory, expected a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")
    return path


def existing_path(path: str, option: str) -> str:
    """A file, folder or checkpoint prefix that exists (prefix: PATH.index exists)."""
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise UsageError(f"{option} {path}: no such file or directory")
    return path


def need_matplotlib(option: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"{option} needs matplotlib: pip install 'refimpl[plot]'") from None


def parse_ids(text: str, what: str) -> np.ndarray:
    from refimpl import run
    try:
        return run.parse_ids(text, what)
    except ValueError as e:
        raise UsageError(str(e)) from None


def read_inputs(path: str, model: str) -> dict:
    """The forward's arrays from an .npz (names INPUT_NAMES)."""
    try:
        inputs = golden.read_npz(path)
    except golden.GoldenError as e:
        raise UsageError(f"--inputs: {e}") from None
    unknown = [n for n in inputs if n not in INPUT_NAMES]
    if unknown:
        raise UsageError(f"--inputs {path}: unknown arrays {', '.join(unknown)}; expected names "
                         f"among {', '.join(INPUT_NAMES)}")
    if "token_ids" not in inputs:
        raise UsageError(f"--inputs {path}: no token_ids array")
    if model == "bert" and any(n in inputs for n in XLNET_ONLY_INPUTS):
        raise UsageError(f"--inputs {path}: {', '.join(n for n in XLNET_ONLY_INPUTS if n in inputs)} "
                         "are XLNet inputs; BERT takes token_ids, segment_ids, attention_mask")
    return inputs


def model_options(args) -> dict:
    """The forward's keyword options (and a head's) from the flags shared by run and golden make."""
    xlnet_flags = {"attn_type": args.attn_type, "mem_len": args.mem_len, "reuse_len": args.reuse_len,
                   "clamp_len": args.clamp_len, "bi_data": args.bi_data or None,
                   "same_length": args.same_length or None}
    head_flags = {"task": args.task, "summary_type": args.summary_type,
                  "use_summ_proj": args.use_summ_proj, "n_choice": args.n_choice,
                  "start_n_top": args.start_n_top, "end_n_top": args.end_n_top}
    given = {k: v for k, v in xlnet_flags.items() if v is not None}
    head_given = {k: v for k, v in head_flags.items() if v is not None}
    if head_given and args.head is None:
        raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in head_given)}: options of "
                         "a head; give --head")
    if args.model == "bert":
        if given or args.num_segments or head_given:
            flags = [*given, *head_given] + (["num_segments"] if args.num_segments else [])
            raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in flags)}: XLNet options; "
                             "BERT takes none")
        return {} if args.head is None else {"head": args.head}
    given.setdefault("attn_type", "bi")
    if args.head is not None:
        given.update(head=args.head, **head_given)
    if args.num_segments is not None:
        given["segments"] = args.num_segments  # last, as in the shipped cases
    return given


# --- commands --------------------------------------------------------------------------------
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


def cmd_inspect(args) -> int:
    existing_path(args.path, "PATH")
    variables = checkpoint.list_variables(args.path)
    if args.values is None:
        width = max((len(n) for n in variables), default=4)
        emit(f"{'name':<{width}}  {'dtype':<10}  shape")
        for name, (dtype, shape) in variables.items():
            emit(f"{name:<{width}}  {dtype:<10}  {list(shape)}")
        total = sum(int(np.prod(s)) for _, s in variables.values())
        emit(f"# {len(variables)} variables, {total} values, prefix {checkpoint.resolve_prefix(args.path)}")
        return 0
    if args.values not in variables:
        close = difflib.get_close_matches(args.values, list(variables), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"--values: no variable {args.values!r} in {args.path}{hint}")
    values = checkpoint.load_checkpoint(args.path, names=[args.values])  # only this tensor is read
    emit(_summary(args.values, values[args.values]))
    return 0


def _text_inputs(args, checkpoint_dir: str) -> tuple[dict, list]:
    """(inputs, piece labels) from --text [--text-b]: the checkpoint's own tokenizer (vocab.txt or
    spiece.model beside it) and the fine-tuning scripts' layout; with --target-len (XLNet) the
    bare pieces cut into segments of that length, as keras-xlnet's memory example."""
    from refimpl import text
    try:
        tokenizer = text.tokenizer_for(checkpoint_dir, args.model)
        if args.target_len is None:
            encoded = tokenizer.encode(args.text, args.text_b, max_len=args.max_len)
            inputs = {k: np.array([encoded[k]]) for k in ("token_ids", "segment_ids", "attention_mask")}
            return inputs, list(encoded["tokens"])
        if args.model != "xlnet" or args.text_b is not None:
            raise UsageError("--target-len runs one XLNet text in segments: give --model xlnet and "
                             "no --text-b")
        pieces = tokenizer.tokenize(args.text)
        segments = text.segments_for_memory(tokenizer.convert_tokens_to_ids(pieces), args.target_len)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise UsageError(f"--text: {e}") from None
    inputs = {k: np.array([[seg[k]] for seg in segments]) for k in ("token_ids", "attention_mask")}
    inputs["segment_ids"] = np.zeros_like(inputs["token_ids"])  # one text: segment 0, as the note's run
    args.num_segments = len(segments)
    return inputs, pieces


def _run_inputs(args, checkpoint_dir: str) -> tuple[dict, np.ndarray | list]:
    """(inputs, labels of the first segment's tokens) from --text, --inputs or --tokens /
    --segments or the default example."""
    from refimpl import run
    if args.text_b is not None and args.text is None:
        raise UsageError("--text-b needs --text")
    if args.target_len is not None and args.text is None:
        raise UsageError("--target-len needs --text (use --inputs with --num-segments for ids)")
    if args.max_len is not None and (args.text is None or args.target_len is not None):
        raise UsageError("--max-len needs --text and no --target-len (it truncates and pads one "
                         "text or pair, as the fine-tuning scripts' max_seq_length)")
    sources = [name for name, value in (("--text", args.text), ("--inputs", args.inputs),
                                        ("--tokens", args.tokens)) if value is not None]
    if len(sources) > 1 or (args.segments is not None and args.tokens is None):
        raise UsageError(f"{' and '.join(sources) or '--segments'}: give one of --text, --inputs, "
                         "--tokens (with --segments)")
    if args.text is not None:
        return _text_inputs(args, checkpoint_dir)
    if args.inputs is not None:
        inputs = read_inputs(args.inputs, args.model)
        tokens = inputs["token_ids"]
        return inputs, [str(t) for t in (tokens[0] if args.num_segments else tokens)[0]]
    default = run.DEFAULTS[args.model]
    tokens = parse_ids(default.tokens if args.tokens is None else args.tokens, "--tokens")
    segments_text = args.segments if args.segments is not None else (
        None if args.tokens is not None else default.segments)
    segments = None if segments_text is None else parse_ids(segments_text, "--segments")
    if segments is not None and segments.shape != tokens.shape:
        raise UsageError(f"--segments: shape {segments.shape} does not match --tokens {tokens.shape}")
    return {"token_ids": tokens, "segment_ids": segments}, [str(t) for t in tokens[0]]


def cmd_run(args) -> int:
    from refimpl import run
    golden_dir = golden.default_golden_dir()
    if args.checkpoint is not None:
        existing_path(args.checkpoint, "--checkpoint")
    checkpoint_dir = args.checkpoint or os.path.join(golden_dir, run.DEFAULT_CHECKPOINTS[args.model])
    if args.out:
        writable_file(args.out, "--out")
    if args.plot_attention:
        writable_file(args.plot_attention, "--plot-attention")
        need_matplotlib("--plot-attention")
    inputs, labels = _run_inputs(args, checkpoint_dir)
    options = model_options(args)
    try:
        tensors = run.compute(args.model, checkpoint_dir, inputs, options, args.dialect, args.dtype)
    except checkpoint.CheckpointError:  # a ValueError too, but a broken file: exit 1, in main
        raise
    except ValueError as e:  # bad input to the model: the message names the value
        raise UsageError(str(e)) from None
    emit(f"refimpl run: {args.model} {checkpoint_dir}, tokens {np.shape(inputs['token_ids'])}, dialect "
         f"{args.dialect}, {args.dtype}" + "".join(f", {k} {v}" for k, v in options.items()))
    if args.text is not None:
        emit(f"pieces: {labels}")
    emit(run.table(tensors, fine=args.all))
    status = 0
    is_default_example = (args.tokens is None and args.segments is None and args.inputs is None
                          and args.text is None and args.dialect == "tf"
                          and options in ({}, {"attn_type": "bi"}))
    if is_default_example:
        line = golden.check_default_run(args.model, tensors, golden_dir, checkpoint_dir,
                                        budget=args.dtype if args.dtype in EMULATED else None)
        status = 1 if "DOES NOT match" in line else 0
        emit(line)
    else:
        emit("golden: not the default example, nothing to compare with (see refimpl golden make "
             "and refimpl compare)")
    if args.out:
        written = golden.write_npz(args.out, tensors)
        emit(f"wrote {len(tensors)} tensors to {written}")
    if args.plot_attention:
        if options.get("segments"):  # the last segment, its keys: memory m0, m1, ..., then its tokens
            last = f"segment-{options['segments'] - 1}/"
            tensors = {k[len(last):]: v for k, v in tensors.items() if k.startswith(last)}
            if args.target_len:  # the last segment's pieces, then its padding
                labels = labels[(options["segments"] - 1) * args.target_len:]
                labels = labels + ["<pad>"] * (args.target_len - len(labels))
            else:
                labels = [str(t) for t in np.asarray(inputs["token_ids"])[-1][0]]
        run.plot_attention(tensors, args.plot_attention,
                           f"{args.model} attention probabilities (batch item 0), "
                           f"{os.path.basename(os.path.normpath(checkpoint_dir))}", labels)
        emit(f"wrote attention plot to {args.plot_attention}")
    return status


def cmd_compare(args) -> int:
    if args.json:
        writable_file(args.json, "--json")
    if args.plot:
        writable_file(args.plot, "--plot")
        need_matplotlib("--plot")
    try:
        expected, tolerances = golden.read_tensors(args.expected)
        actual, _ = golden.read_tensors(args.actual)
        budgets = None if args.budget is None else golden.read_budgets(args.expected)
    except golden.GoldenError as e:
        raise UsageError(str(e)) from None
    budget = None if args.budget is None else budget_precision(args.budget, actual)
    if budget is not None:
        emit(f"# tolerances: {compare.BUDGET_K:g} x the error budget of refimpl's own {budget} run "
             f"(per tensor, stored in {args.expected})")
    report = compare.compare(expected, actual, tolerances, args.rtol, args.atol, args.allow_missing,
                             args.precision, args.only or (), args.skip or (), budgets, budget)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(compare.to_json_text(report) + "\n")
    if args.plot:
        try:
            compare.plot(report, args.plot, f"{args.actual} vs {args.expected}")
        except ValueError as e:
            emit(f"refimpl compare: no plot: {e}", sys.stderr)
    emit(report.format())
    for problem in report.problems():
        emit(f"refimpl compare: error: {problem}", sys.stderr)
    return report.exit_code


def budget_precision(given: str, actual: dict) -> str:
    """--budget's precision: the one given, or ("auto") ACTUAL's: its lowest float dtype, and for
    float32 arrays whose values are all bfloat16 (float16) numbers, that format."""
    if given != "auto":
        return given
    floats = [compare.precision_of(np.asarray(a).dtype) for a in actual.values()
              if np.asarray(a).dtype.kind == "f" or np.asarray(a).dtype.name == "bfloat16"]
    if not floats:
        raise UsageError("--budget: ACTUAL holds no float tensors to tell its precision from; "
                         "give it: --budget float32|bfloat16|float16")
    lowest = compare.lower_precision(*floats)
    if lowest == "float32":
        lowest = compare.precision_of_values(actual) or "float32"
    if lowest == "float64":
        raise UsageError("--budget: ACTUAL is float64, where budgets do not apply (refimpl's float64 "
                         "is the reference): drop --budget, or give the precision the port ran in")
    emit(f"# --budget: ACTUAL's precision is {lowest}")
    return lowest


def _verify_targets(args) -> list[tuple[str, str]]:
    """(case folder, golden folder its checkpoint paths are relative to) for each argument."""
    if not args.paths:
        golden_dir = args.golden or golden.default_golden_dir()
        try:
            return [(f, golden_dir) for f in golden.case_folders(golden_dir)]
        except golden.GoldenError as e:
            hint = "" if args.golden else " (pass --golden DIR: the golden/ folder of a refimpl checkout)"
            raise UsageError(f"{e}{hint}") from None
    targets = []
    for path in args.paths:
        existing_path(path, "PATH")
        if os.path.isfile(os.path.join(path, golden.CASE_FILE)):
            targets.append((path, args.golden or golden.default_golden_dir()))
        else:
            try:
                targets += [(f, path) for f in golden.case_folders(path)]
            except golden.GoldenError as e:
                raise UsageError(f"{e} (and no {golden.CASE_FILE}: not a case folder either)") from None
    return targets


def cmd_golden_verify(args) -> int:
    targets = _verify_targets(args)
    failed = 0
    for folder, golden_dir in targets:
        name = os.path.basename(os.path.normpath(folder))
        try:
            problems, report = golden.verify_case(folder, golden_dir)
        except (golden.GoldenError, checkpoint.CheckpointError, ValueError) as e:
            problems, report = [str(e)], None
        if problems or report.exit_code:
            failed += 1
            emit(f"FAIL {name}")
            for problem in problems + ([] if report is None else report.problems()):
                emit(f"     {problem}")
            if report is not None and report.first_divergence is not None:
                emit("\n".join("     " + line for line in report.format(problems_only=True).splitlines()))
        else:
            worst = max(report.compared, key=lambda r: r.max_abs)
            emit(f"ok   {name}: {len(report.compared)} tensors within tolerance "
                 f"(max abs error {worst.max_abs:.2g} in {worst.name})")
    places = sorted({g for _, g in targets})
    emit(f"{len(targets) - failed} of {len(targets)} golden cases verified in {', '.join(places)}")
    return 1 if failed else 0


def cmd_golden_make(args) -> int:
    existing_path(args.checkpoint, "--checkpoint")
    if os.path.exists(args.out_dir) and os.listdir(args.out_dir) and not args.force:
        raise UsageError(f"OUT_DIR {args.out_dir}: exists and is not empty (pass --force to "
                         "overwrite a case folder)")
    inputs = read_inputs(args.inputs, args.model)
    options = model_options(args)
    name = args.name or os.path.basename(os.path.normpath(args.out_dir))
    overrides = []
    for text in args.tolerance or ():
        try:
            pattern, rtol, atol, reason = text.split(":", 3)
            overrides.append({"name": pattern, "rtol": float(rtol), "atol": float(atol), "reason": reason})
        except ValueError:
            raise UsageError(f"--tolerance {text!r}: expected NAME_GLOB:RTOL:ATOL:REASON") from None
    if args.dtype in EMULATED:
        raise UsageError(f"--dtype {args.dtype}: golden cases are computed in float64 (or float32); "
                         "their budgets already hold what a bfloat16 / float16 run errs by")
    command = "refimpl golden make " + " ".join(sys.argv[3:] if len(sys.argv) > 3 else [])
    try:
        case, outputs = golden.make_case(args.model, args.checkpoint, inputs, options, args.dialect,
                                         args.dtype, name=name, description=args.description or "",
                                         command=command.strip(), overrides=overrides)
    except checkpoint.CheckpointError:
        raise
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        case = golden.write_case(args.out_dir, case, inputs, outputs)
    except OSError as e:
        raise UsageError(f"OUT_DIR {args.out_dir}: cannot write ({e.strerror})") from None
    emit(f"wrote case {case['name']} to {args.out_dir}: {len(outputs)} tensors, {args.model} "
         f"{args.dialect} {args.dtype}, checkpoint sha256 recorded; check a port with\n"
         f"  refimpl compare {args.out_dir} PORT.npz")
    return 0


def cmd_convert(args) -> int:
    from refimpl import convert
    existing_path(args.checkpoint, "CKPT")
    return convert.main(args.checkpoint, args.out_dir, args.dialect)


# --- the parser ------------------------------------------------------------------------------
def _model_flags(p: argparse.ArgumentParser, default_model: str | None) -> None:
    p.add_argument("--model", choices=["xlnet", "bert"], default=default_model,
                   required=default_model is None)
    p.add_argument("--dialect", choices=["tf", "keras", "hf"], default="tf")
    p.add_argument("--dtype", choices=["float64", "float32", *EMULATED], default="float64",
                   help="float64 (default), float32, or bfloat16 / float16 emulated: float32 "
                   "arithmetic, every stored value rounded to 16 bits (golden make: float64, float32)")
    x = p.add_argument_group("XLNet options")
    x.add_argument("--attn-type", choices=["bi", "uni"], help="attention type (default bi)")
    x.add_argument("--mem-len", type=int, metavar="N", help="memory length to return (mems)")
    x.add_argument("--reuse-len", type=int, metavar="N", help="positions of the segment to reuse")
    x.add_argument("--clamp-len", type=int, metavar="N", help="clamp relative positions (-1: none)")
    x.add_argument("--bi-data", action="store_true", help="bidirectional data (even batch)")
    x.add_argument("--same-length", action="store_true",
                   help="with uni: every query sees the same number of keys (the original's same_length)")
    x.add_argument("--num-segments", type=int, metavar="S",
                   help="the --inputs arrays hold S consecutive segments on a leading axis, each "
                        "run with the memory of the previous one (pass --mem-len)")
    h = p.add_argument_group("fine-tuning heads (fine-tuned checkpoints)")
    h.add_argument("--head", metavar="HEAD",
                   help="BERT: classifier, squad; XLNet: summary, classification, regression, race, "
                        "squad, or a part of the checkpoint's heads (classification_<task>)")
    h.add_argument("--task", help="XLNet classification/regression task (default: the checkpoint's only one)")
    h.add_argument("--summary-type", choices=["last", "first", "mean", "attn"],
                   help="XLNet sequence summary (default: what the checkpoint holds)")
    h.add_argument("--use-summ-proj", action=argparse.BooleanOptionalAction, default=None,
                   help="XLNet summary projection (default: as the checkpoint holds)")
    h.add_argument("--n-choice", type=int, help="XLNet race: choices per question (default 4)")
    h.add_argument("--start-n-top", type=int, help="XLNet squad: start beam (default 5)")
    h.add_argument("--end-n-top", type=int, help="XLNet squad: end beam (default 5)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refimpl", description="NumPy reference of BERT and XLNet.")
    parser.add_argument("--version", action="version", version=f"refimpl {refimpl.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runp = sub.add_parser("run", help="run a model on an example; per-layer table; golden check",
                          description="Run XLNet or BERT on a small example (default: the shipped "
                          "xlnet-tiny on a fixed example, checked against its golden case).")
    _model_flags(runp, "xlnet")
    runp.add_argument("--checkpoint", metavar="DIR", help="model directory (default: the shipped tiny one)")
    runp.add_argument("--tokens", help='token ids, e.g. "17 25 33" (rows separated by ";")')
    runp.add_argument("--segments", help="segment ids, same shape as --tokens (default: all 0)")
    runp.add_argument("--text", help="a sentence, tokenized with the checkpoint's vocab.txt / spiece.model "
                      "(needs [text] for XLNet); the table and plots are labelled with its pieces")
    runp.add_argument("--text-b", help="a second text (BERT: [SEP] between; XLNet: <sep> between)")
    runp.add_argument("--max-len", type=int, metavar="N",
                      help="with --text: truncate (the longer text first) and pad to N positions, "
                           "as the fine-tuning scripts' max_seq_length (BERT pads on the right, "
                           "XLNet on the left)")
    runp.add_argument("--target-len", type=int, metavar="N",
                      help="XLNet: run the text's pieces in segments of N, each with the memory of "
                           "the previous ones (pass --mem-len), as keras-xlnet's memory example")
    runp.add_argument("--inputs", metavar="INPUTS.npz",
                      help="the forward's arrays (token_ids, segment_ids, attention_mask, perm_mask, "
                           "target_mapping, inp_q), as for golden make")
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
                          "Exit 0 all within tolerance, 1 a mismatch, 2 unusable input or names "
                          "missing from ACTUAL (without --allow-missing).")
    comp.add_argument("expected", help=".npz of named tensors, or a golden case folder (its tolerances apply)")
    comp.add_argument("actual", help=".npz of named tensors, or a golden case folder")
    comp.add_argument("--precision", choices=list(compare.PRECISIONS),
                      help="whose default tolerances apply (default: the lower precision of the two sides)")
    comp.add_argument("--budget", nargs="?", const="auto", choices=["auto", *compare.BUDGET_PRECISIONS],
                      metavar="PRECISION",
                      help="tolerance = %g x the case's error budget at PRECISION (float32, bfloat16, "
                      "float16; default: ACTUAL's): what refimpl's own run at that precision errs "
                      "by, per tensor. EXPECTED must be a golden case folder" % compare.BUDGET_K)
    comp.add_argument("--rtol", type=float, help="relative tolerance for every tensor")
    comp.add_argument("--atol", type=float, help="absolute tolerance for every tensor")
    comp.add_argument("--only", action="append", metavar="GLOB", help="compare only these names (repeatable)")
    comp.add_argument("--skip", action="append", metavar="GLOB", help="leave out these names (repeatable)")
    comp.add_argument("--allow-missing", action="store_true",
                      help="names missing from ACTUAL are listed as not checked, and exit 0 if the rest match")
    comp.add_argument("--json", metavar="FILE.json", help="write the whole report, machine-readable")
    comp.add_argument("--plot", metavar="FILE.png", help="plot the error through the network (needs [plot])")
    comp.set_defaults(func=cmd_compare)

    gold = sub.add_parser("golden", help="golden cases: verify the stored ones, make your own")
    gold_sub = gold.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    verify = gold_sub.add_parser("verify", help="check hashes and recompute cases within tolerance")
    verify.add_argument("paths", nargs="*", metavar="PATH",
                        help="case folders or golden folders (default: the repository's golden/)")
    verify.add_argument("--golden", metavar="DIR",
                        help="golden folder: the cases to verify when no PATH is given, and the folder "
                             "case checkpoints are relative to (default: the repository's golden/)")
    verify.set_defaults(func=cmd_golden_verify)
    make = gold_sub.add_parser("make", help="write a golden case for your checkpoint and inputs",
                               description="Compute a golden case (case.json, inputs.npz, outputs.npz) "
                               "with refimpl for your checkpoint and inputs.")
    make.add_argument("out_dir", metavar="OUT_DIR", help="case folder to write")
    _model_flags(make, None)
    make.add_argument("--checkpoint", metavar="DIR", required=True, help="model directory")
    make.add_argument("--inputs", metavar="INPUTS.npz", required=True,
                      help="token_ids and any of segment_ids, attention_mask, perm_mask, "
                           "target_mapping, inp_q")
    make.add_argument("--name", help="case name (default: OUT_DIR's base name)")
    make.add_argument("--description", help="one line stored in case.json")
    make.add_argument("--tolerance", action="append", metavar="GLOB:RTOL:ATOL:REASON",
                      help="a per-name tolerance override with its reason (repeatable)")
    make.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR")
    make.set_defaults(func=cmd_golden_make)

    conv = sub.add_parser("convert", help="official TF checkpoint -> transformers folder (config.json + "
                          "model.safetensors; needs [convert])")
    conv.add_argument("checkpoint", metavar="CKPT", help="model directory or checkpoint prefix")
    conv.add_argument("out_dir", metavar="OUT_DIR")
    conv.add_argument("--dialect", choices=["tf", "hf"], default="tf",
                      help="tf: tanh GELU (gelu_new, the original code); hf: exact GELU")
    conv.set_defaults(func=cmd_convert)
    return parser


def _subparser(parser, args):
    sub = parser._subparsers._group_actions[0].choices[args.command]
    if args.command == "golden":
        sub = sub._subparsers._group_actions[0].choices[args.golden_command]
    return sub


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    sub = _subparser(parser, args)
    for negative in ("rtol", "atol"):
        if getattr(args, negative, None) is not None and getattr(args, negative) < 0:
            sub.error(f"--{negative} must be >= 0, got {getattr(args, negative)}")
    try:
        return args.func(args)
    except UsageError as e:
        sub.print_usage(sys.stderr)
        emit(f"refimpl {args.command}: error: {e}", sys.stderr)
        return 2
    except checkpoint.CheckpointError as e:
        emit(f"refimpl {args.command}: error: {e}", sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
