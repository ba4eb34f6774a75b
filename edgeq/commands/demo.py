"""``edgeq demo``: the whole flow on a CNN trained on scikit-learn's real handwritten digits."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgeq.api import export
from edgeq.cache import cache_dir
from edgeq.commands.common import progress_from
from edgeq.config import Budget, PipelineConfig
from edgeq.report.markdown import terminal_summary
from edgeq.zoo.digits import write_digits_data


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="train the digits CNN, export static INT8, validate, report",
                       description="Train (or load from the cache) a small CNN on scikit-learn's load_digits — real "
                                   "8x8 handwritten digits that ship with scikit-learn — then export it to INT8 "
                                   "ONNX, validate against the float model and write a report.")
    p.add_argument("-o", "--output", type=Path, default=Path("edgeq-demo"), help="output folder (default ./edgeq-demo)")
    p.add_argument("--target", default="x86-64", help="target profile (default x86-64)")
    p.add_argument("--format", default="onnx", help="onnx, pte or onnx,pte (default onnx)")
    p.add_argument("--validate-on", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    progress = progress_from(args)
    progress.stage("preparing scikit-learn digits (1,797 real handwritten 8x8 images)")
    calib, ev = write_digits_data(cache_dir("data"))
    cfg = PipelineConfig(model="edgeq.zoo.digits:digits_cnn", calib=str(calib), eval=str(ev), output=args.output,
                         target=args.target, formats=tuple(args.format.split(",")), force=True,
                         budget=Budget(max_accuracy_drop=0.5),
                         validate_on=tuple(args.validate_on.split(",")))
    result = export(cfg, progress)
    print(terminal_summary(result.manifest, str(result.output)))
    print(f"demo wall time: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0 if result.passed else 1
