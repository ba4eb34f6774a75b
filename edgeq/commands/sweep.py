"""``edgeq sweep``: a grid of ONNX variants, their accuracy / size / latency trade-off, and the budget's pick."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeq.commands.common import add_budget_flags, budget_from, progress_from
from edgeq.config import PipelineConfig, QuantOptions

EPILOG = """\
Variants (ONNX): float32, fp16, dynamic INT8, static INT8 with the target's scheme and with each other
calibration method (minmax/percentile/entropy) and weight granularity, static INT8 with the fragile transformer
patterns (mask arithmetic, Softmax, LayerNorm, GELU, residual Add) in float, and mixed precision (the 8 most
sensitive nodes at 16-bit activations). OUTDIR/report.html plots accuracy vs bytes and accuracy vs host latency
with the Pareto front marked and rings the pick: the smallest, then fastest, variant inside the budget.
Exit 0 when some variant meets the budget, 1 when none does.

example:
  edgeq sweep edgeq.zoo.text:text_encoder --calib calib.npz --eval eval.npz --min-cosine 0.995 -o sweep/
"""


def register(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeq.search.sweep import run_sweep

    cfg = PipelineConfig(
        model=args.model, calib=args.calib, eval=args.eval, output=args.output, target=args.target,
        formats=("onnx",), quant=QuantOptions(max_calibration_samples=args.calib_samples), budget=budget_from(args),
        force=args.force, eval_fraction=args.eval_fraction, max_eval_samples=args.max_eval_samples, seed=args.seed,
        validate_on=tuple(s.strip() for s in args.validate_on.split(",") if s.strip()))
    m = run_sweep(cfg, progress_from(args))
    s = m["sweep"]
    print(f"{'variant':34} {'bytes':>9} {'× float':>8} {'latency ms':>11} {s['metric']:>12}  budget")
    for r in s["variants"]:
        y = r["metrics"][s["metric"]]
        lat = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "–"
        star = " *" if r["name"] == s["pick"] else ""
        print(f"{r['name']:34} {r['bytes']:>9} {r['size_ratio'] or 0:>8.3f} {lat:>11} {y:>12.5f}  "
              f"{'pass' if r['passed'] else 'FAIL'}{star}")
    print(f"pick: {s['pick']}" if s["pick"] else "pick: none — no variant meets the budget")
    v = m["verdict"]
    # The folder's verdict, as `edgeq check` computes it: every variant in it must meet the budget.
    print(f"verdict: {'PASS' if v['passed'] else 'FAIL'}"
          + ("" if v["passed"] else f" ({len(v['failures'])} variant/runner result(s) over budget; `edgeq check` "
                                    "on this folder agrees)"))
    print(f"report: {args.output}/report.html", file=sys.stdout)
    return 0 if v["passed"] else 1
