"""``edgeq sweep``: a grid of ONNX variants, their accuracy / size / latency trade-off, and the budget's pick."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from edgeq.commands.common import add_budget_flags, budget_from, progress_from
from edgeq.commands.compress_flags import add_compress_flags, compress_from
from edgeq.compress.sweep import parse_ladders, run_compress_sweep
from edgeq.config import PipelineConfig, QuantOptions
from edgeq.console import emit_json, human
from edgeq.errors import UsageError
from edgeq.jsontypes import get_object, get_objects, get_str, get_strs
from edgeq.sweep import run_sweep

EPILOG = """\
Variants (ONNX): float32, fp16, dynamic INT8, static INT8 with the target's scheme and with each other
calibration method (minmax/percentile/entropy) and weight granularity, static INT8 with the fragile transformer
patterns (mask arithmetic, Softmax, LayerNorm, GELU, residual Add) in float, and mixed precision (the 8 most
sensitive nodes at 16-bit activations). OUTDIR/report.html plots accuracy vs bytes and accuracy vs host latency
with the Pareto front marked and rings the pick: the smallest, then fastest, variant inside the budget.
Exit 0 when some variant meets the budget, 1 when none does.

example:
  edgeq sweep edgeq.zoo.text:text_encoder --calib calib.npz --eval eval.npz --min-cosine 0.995 -o sweep/

With --methods, the sweep runs compression ladders instead (see docs/how-to/compress.md):
  edgeq sweep edgeq.zoo.digits:digits_wide_cnn --calib calib.npz --eval eval.npz --format onnx,pte \\
      --methods prune:0.3:0.5:0.7,lowrank:0.95:0.9,cluster:256:16 --max-accuracy-drop 1 --min-cosine 0 -o sweep/
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sweep", help="evaluate a grid of precision variants and plot the trade-off",
                       description="Build float, fp16, dynamic INT8, static INT8 variants and mixed precision of an "
                                   "ONNX model, validate each, plot accuracy vs size and latency.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--calib", required=True, metavar="DATA", help="calibration data (.npz or folder)")
    p.add_argument("--eval", metavar="DATA", help="evaluation data; default: a held-out split of --calib")
    p.add_argument("--target", default="x86-64", metavar="NAME|FILE.toml")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", type=Path)
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it exists")
    p.add_argument("--validate-on", default="host", metavar="RUNNER[,RUNNER]")
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--max-eval-samples", type=int, default=512)
    p.add_argument("--calib-samples", type=int, default=256, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    add_budget_flags(p)
    g = p.add_argument_group("compression sweep (instead of the precision grid)")
    g.add_argument("--methods", metavar="METHOD[:LEVEL:LEVEL...][,...]",
                   help="sweep compression methods x levels, e.g. prune:0.1:0.2:0.3,lowrank,cluster:256:16 (a bare "
                        "name climbs its default ladder); each ladder stops once a level leaves the budget")
    g.add_argument("--format", default="onnx", metavar="FMT[,FMT]", help="formats each trial exports (--methods)")
    g.add_argument("--workers", type=int, default=2, metavar="N", help="parallel trial processes (default 2)")
    g.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the trials as Ray tasks on this cluster (host:port from `ray start --head`, or auto); "
                        "needs pip install 'edgeq[ray]'")
    add_compress_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = PipelineConfig(
        model=args.model, calib=args.calib, eval=args.eval, output=args.output, target=args.target,
        formats=("onnx",), quant=QuantOptions(max_calibration_samples=args.calib_samples), budget=budget_from(args),
        force=args.force, eval_fraction=args.eval_fraction, max_eval_samples=args.max_eval_samples, seed=args.seed,
        validate_on=tuple(s.strip() for s in args.validate_on.split(",") if s.strip()))
    if args.methods:
        return run_methods(args, cfg)
    m = run_sweep(cfg, progress_from(args))
    s = get_object(m, "sweep")
    metric = get_str(s, "metric")
    out = human(args)
    print(f"{'variant':34} {'bytes':>9} {'× float':>8} {'latency ms':>11} {metric:>12}  budget", file=out)
    for r in get_objects(s, "variants"):
        y = get_object(r, "metrics")[metric]
        lat = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "–"
        star = " *" if r["name"] == s["pick"] else ""
        print(f"{r['name']:34} {r['bytes']:>9} {r['size_ratio'] or 0:>8.3f} {lat:>11} {y:>12.5f}  "
              f"{'pass' if r['passed'] else 'FAIL'}{star}", file=out)
    print(f"pick: {s['pick']}" if s["pick"] else "pick: none — no variant meets the budget", file=out)
    v = get_object(m, "verdict")
    # The folder's verdict, as `edgeq check` computes it: every variant in it must meet the budget.
    print(f"verdict: {'PASS' if v['passed'] else 'FAIL'}"
          + ("" if v["passed"] else f" ({len(get_strs(v, 'failures'))} variant/runner result(s) over budget; `edgeq check` "
                                    "on this folder agrees)"), file=out)
    print(f"report: {args.output}/report.html", file=out)
    if args.json:
        emit_json({"command": "sweep", "passed": bool(v["passed"]), "pick": s["pick"], "metric": metric,
                   "variants": s["variants"], "budget": m.get("budget"), "output": str(args.output),
                   "report": f"{args.output}/report.html"})
    return 0 if v["passed"] else 1


def run_methods(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    """``--methods``: compression ladders (edgeq.compress.sweep) instead of the precision grid."""
    if args.compress:
        raise UsageError("--compress and --methods exclude each other", "list the methods to sweep in --methods")
    ladders = parse_ladders(args.methods)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    cfg = dataclasses.replace(cfg, formats=formats, compress=compress_from(args))
    s = run_compress_sweep(cfg, ladders, args.workers, progress_from(args), ray_address=args.ray)
    metric = s["metric"]
    print(f"{'variant':16} {'bytes':>9} {'latency ms':>11} {metric:>14}  budget")
    for r in s["variants"]:
        lat = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "–"
        val = f"{r[metric]:.4f}" if r.get(metric) is not None else "–"
        star = " *" if r["name"] == s["pick"] else ""
        print(f"{r['name']:16} {r['bytes'] or 0:>9} {lat:>11} {val:>14}  {'pass' if r['passed'] else 'FAIL'}{star}")
    print(f"pick: {s['pick']}" if s["pick"] else "pick: none — no variant meets the budget")
    print(f"report: {args.output}/report.html")
    return 0 if s["pick"] else 1
