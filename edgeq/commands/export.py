"""``edgeq export``: capture, quantize, run the target's passes, validate, write OUTDIR."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeq.api import export
from edgeq.commands import text_generation
from edgeq.commands.common import (
    add_budget_flags,
    add_fleet_flags,
    add_quant_flags,
    add_runner_timeout_flag,
    budget_from,
    fleet_from,
    progress_from,
)
from edgeq.commands.compress_flags import add_compress_flags, compress_from
from edgeq.config import PipelineConfig, QuantOptions, SearchOptions
from edgeq.config_file import load_config
from edgeq.console import emit_json, human
from edgeq.errors import UsageError
from edgeq.imagefolder import Preprocess
from edgeq.jsontypes import JSONObject, as_list, get_object, get_objects, get_strs
from edgeq.report.markdown import terminal_summary
from edgeq.report.terminal import json_result
from edgeq.select.summary import Selection
from edgeq.validate.orchestrate import exit_code

HELP = """\
MODEL is one of:
  pkg.module:factory      a callable returning an nn.Module, or a (module, example_inputs) pair
  path/to/file.py:factory the same, from a file
  model.pt2               a saved torch.export ExportedProgram
  model.onnx              an existing float ONNX model (capture is skipped)

DATA (--calib, --eval) is an .npz keyed by the model's input names (first axis = samples) plus an optional
`labels` array of class ids, a folder of NAME.npy files / .npz shards (loaded without pickle), or a folder of
images (DATA/*.png, or DATA/CLASS/*.png for labels) for a one-input model, preprocessed by the image flags.
Without --eval a held-out split of --calib is used for evaluation.

OUTDIR receives model.fp32.onnx, model.int8.onnx, (model.fp32.pte, model.int8.pte, model.int8.bpte),
validation/{inputs,reference}.npz, edgeq.json, report.md and report.html — written to a temporary
folder and renamed into place, so a failure or Ctrl-C leaves nothing behind.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="quantize a model to INT8 artifacts and validate them",
                       description="Quantize a PyTorch/ONNX model to INT8 artifacts for a target and validate them "
                                   "against the float model.", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="pkg.module:factory, a .pt2, an .onnx file, or a causal LM (HF folder / .gguf) "
                        "(not with --config edgeq.json)")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration data (.npz or folder); LMs use --calib-text; not with --config edgeq.json")
    p.add_argument("--eval", metavar="DATA", help="evaluation data; default: a held-out split of --calib")
    p.add_argument("--target", default="x86-64", metavar="NAME|FILE.toml",
                   help="target profile (default x86-64; see `edgeq targets`)")
    p.add_argument("--format", default="onnx", metavar="FMT[,FMT]", help="onnx, pte, or onnx,pte (default onnx)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", type=Path)
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it exists")
    p.add_argument("--validate-on", default="auto", metavar="RUNNER[,RUNNER]",
                   help="host, emulator, ssh://user@host[:port][/dir], fleet:SELECTOR (comma-separated; default "
                        "auto: host, plus the emulator for ARM targets once `edgeq emulator setup` has run)")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="held-out share of --calib when no --eval")
    p.add_argument("--max-eval-samples", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=18, help="ONNX opset of the float and INT8 models, 18..23 (default 18)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a .pt2 whose members need pickle (weights, constants, sample inputs). Pickle runs any "
                        "code in the file: only for files you made yourself")
    p.add_argument("--outliers", choices=("auto", "on", "off"), default="auto",
                   help="outlier-aware PTQ in torch before capture (SmoothQuant, INT8 embedding tables, bias "
                        "correction) for the INT8 models of every format; auto: PyTorch models given budget flags "
                        "(default auto)")
    p.add_argument("--rounding", choices=("auto", "adaround", "gptq", "nearest"), default="gptq",
                   help="weight rounding of that preparation for conv nets: gptq (act-order GPTQ), adaround "
                        "(learned, with the INT8 activations in the objective; minutes), nearest, or auto: both "
                        "gptq and adaround, the lower simulated INT8 error kept (default gptq)")
    add_quant_flags(p)
    add_budget_flags(p)
    add_runner_timeout_flag(p)
    p.add_argument("--no-explain", dest="explain", action="store_false",
                   help="skip the per-layer error and per-operator time profiles of the report and `edgeq explain` "
                        "(diagnostics only: what ships and the verdict are the same; saves their runs, which a "
                        "missed budget makes longer by rebuilding the worst layers wider)")
    add_fleet_flags(p)
    add_search_flags(p)
    add_image_flags(p)
    add_compress_flags(p)
    text_generation.add_flags(p)
    p.set_defaults(func=run)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _crop(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from e
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")
    return (parts[0], parts[-1])


def add_image_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "image folders (DATA = a folder of images, or one sub-folder per class -> labels)",
        "Decode, --resize the shorter side, centre --crop, scale to [0,1], (x - mean) / std, --layout, "
        "--image-dtype. Recorded in edgeq.json (signature.inputs[].preprocessing) so apps do the same. "
        "ImageNet-style: --resize 256 --crop 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225")
    g.add_argument("--resize", type=int, metavar="PX", help="resize the shorter side to PX (bilinear)")
    g.add_argument("--crop", type=_crop, metavar="N|HxW", help="centre crop")
    g.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="per-channel mean after scaling to [0,1]")
    g.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std after scaling to [0,1]")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), help="tensor layout (default NCHW)")
    g.add_argument("--image-dtype", choices=("float32", "uint8"),
                   help="float32 (default) or raw uint8 pixels (no scaling or normalisation)")
    g.add_argument("--grayscale", action="store_true", help="decode as one channel instead of RGB")


def preprocess_from(args: argparse.Namespace) -> Preprocess | None:
    given = {k: v for k, v in (("resize", args.resize), ("crop", args.crop), ("mean", args.mean),
                               ("std", args.std), ("layout", args.layout), ("dtype", args.image_dtype)) if v is not None}
    if args.grayscale:
        given["channels"] = 1
    return Preprocess(**given) if given else None


def add_search_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "accuracy-aware search (ONNX and .pte INT8)",
        "By default the search runs when the first INT8 model misses the budget (flags, else the target's). Moves, "
        "ordered by expected gain (a transformer whose dynamic INT8 is predicted to beat static starts dynamic and "
        "builds no static model): dynamic INT8, the most sensitive Linears kept float, calibration methods, "
        "per-channel/per-tensor, fragile transformer patterns kept in float, the most sensitive nodes at 16-bit or "
        "float. The smallest, then fastest, model inside the budget wins.")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--search", dest="search_mode", action="store_const", const="always", default="auto",
                   help="always search (with the budget from flags or the target profile)")
    m.add_argument("--no-search", dest="search_mode", action="store_const", const="off",
                   help="never search; quantize once with the given options")
    g.add_argument("--search-trials", type=int, default=SearchOptions.max_trials, metavar="N",
                   help=f"the search's budget, in trials: the same inputs evaluate the same trials on any machine, "
                        f"so they ship the same bytes (default {SearchOptions.max_trials})")
    g.add_argument("--search-time", type=float, default=SearchOptions.max_seconds, metavar="SECONDS",
                   help=f"safety cap on the search's wall-clock time, checked between trials; when it, not "
                        f"--search-trials, stops the search, the summary and --json say so, since the result then "
                        f"depends on machine speed (default {SearchOptions.max_seconds:g})")
    g.add_argument("--max-size-ratio", type=float, metavar="R",
                   help="the INT8 model may be at most R × the float model's bytes (e.g. 0.3); without it, search "
                        "trials larger than 0.75× float are rejected (they barely quantize anything)")


def search_from(args: argparse.Namespace) -> SearchOptions:
    return SearchOptions(mode=args.search_mode, max_trials=args.search_trials, max_seconds=args.search_time,
                         max_size_ratio=args.max_size_ratio)


def quant_from(args: argparse.Namespace) -> QuantOptions:
    return QuantOptions(
        mode="dynamic" if args.dynamic or args.per_token else "static", per_token=args.per_token,
        calibration=args.calibration, per_channel=args.per_channel,
        activation_type=args.activation_type, weight_type=args.weight_type, reduce_range=args.reduce_range,
        nodes_to_exclude=tuple(args.exclude_node), op_types_to_exclude=tuple(args.exclude_op_type),
        max_calibration_samples=args.calib_samples)


def run(args: argparse.Namespace) -> int:
    rebuild = args.config is not None and is_manifest_config(args.config)
    if not rebuild and args.model is not None and text_generation.wants_llm(args):
        return text_generation.run(args)
    if not rebuild and (args.model is None or args.calib is None):
        raise UsageError("export needs MODEL and --calib (or --config OUTDIR/edgeq.json)",
                         "e.g. edgeq export pkg.mod:factory --calib calib.npz -o out/; for LMs use --calib-text")

    cfg = config_from_args(args) if rebuild else PipelineConfig(
        model=args.model, calib=args.calib, eval=args.eval, output=args.output, target=args.target,
        formats=tuple(f.strip() for f in args.format.split(",") if f.strip()), quant=quant_from(args),
        budget=budget_from(args), force=args.force, eval_fraction=args.eval_fraction,
        max_eval_samples=args.max_eval_samples, seed=args.seed, opset=args.opset, search=search_from(args),
        trust_pickle=args.trust_pickle, validate_on=tuple(s.strip() for s in args.validate_on.split(",") if s.strip()),
        preprocess=preprocess_from(args), compress=compress_from(args), outliers=args.outliers,
        runner_timeout_s=args.runner_timeout, fleet=fleet_from(args), rounding=args.rounding,
        explain=args.explain)
    result = export(cfg, progress_from(args))
    out = human(args)
    print(terminal_summary(result.manifest, str(result.output)), file=out)
    for key in ("search", "search_pte"):  # the ONNX and the .pte selection, each in the Selection's words
        if result.manifest.get(key):
            print(search_summary(get_object(result.manifest, key)), file=out)
    if args.json:
        emit_json({"command": "export", **json_result(result.manifest, str(result.output))})

    return exit_code(get_object(result.manifest, "verdict"))


def is_manifest_config(path: Path) -> bool:
    """``--config OUT/edgeq.json`` (or the OUT folder) rebuilds that export; ``--config edgeq.toml`` only supplies
    flag defaults (applied by the CLI parser before this command runs)."""
    return path.suffix == ".json" or path.is_dir()


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """``--config edgeq.json``: the manifest decides everything but -o/--force; other flags are an error."""
    defaults = vars(_defaults_parser().parse_args(["-o", "x"]))
    given = sorted(k for k, v in vars(args).items()
                   if k in defaults and k not in ("output", "force", "config", "runner_timeout", "explain")
                   and v != defaults[k])
    if given:
        flags = ", ".join("--" + k.replace("_", "-") if k != "model" else "MODEL" for k in given)
        raise UsageError(f"--config takes every option from {args.config}; also given: {flags}",
                         "drop those flags, or edit the config file")
    return load_config(args.config, output=args.output, force=args.force, runner_timeout_s=args.runner_timeout,
                       explain=args.explain)


def _defaults_parser() -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    return sub.choices["export"]


def search_summary(s: JSONObject) -> str:
    """The selection's one line (:meth:`edgeq.select.summary.Selection.line`: what shipped, budget met or not), plus
    the closest trials when the budget was not met."""
    lines = [Selection.from_dict(dict(get_object(s, "selection"))).line()]
    if not s["met"] and s.get("closest"):
        by_index = {t["index"]: t for t in get_objects(s, "trials")}
        lines.append("closest trials:")
        for i in as_list(s["closest"], "closest"):
            t = by_index[i]
            lines.append(f"  trial {i} [{t['label']}]: {'; '.join(get_strs(t, 'failures')) or t['error']}")
    return "\n".join(lines)
