"""``edgeq explain OUTDIR``: where an export's error and time come from (per layer, per operator)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeq.console import emit_json, human
from edgeq.explain.view import explain, render_text


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="show where an export's error and latency come from (per layer / operator)",
                       description="Read OUTDIR/edgeq.json (nothing else, never a pickle) and print the per-layer "
                                   "error of the shipped models with the measured fixes, the warnings about "
                                   "operators outside the XNNPACK delegate or in float around unfused Q/DQ pairs, "
                                   "and the operators that take the time in each artifact.")
    p.add_argument("outdir", type=Path, metavar="OUTDIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    doc = explain(args.outdir)
    print(render_text(doc), file=human(args))
    if args.json:
        emit_json({"command": "explain", **doc})
    return 0
