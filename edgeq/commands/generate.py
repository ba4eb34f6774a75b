"""``edgeq generate``: stream text from an exported small language model (.pte or .onnx)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeq.llm.generate import generate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate", help="stream text from an exported language model",
        description="Generate text from the folder written by `edgeq export MODEL --task text-generation`, through "
                    "the artifact's KV cache. Greedy by default; --temperature > 0 samples with top-p.",
        epilog="example:\n  edgeq generate out/ --prompt 'The Python for statement' --format pte --max-new-tokens 40",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", type=Path, metavar="OUTDIR")
    p.add_argument("--prompt", required=True)
    p.add_argument("--format", choices=("pte", "onnx"), help="which artifact (default: the first picked one)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus mass when sampling (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(args.prompt)
    for piece in generate(args.outdir, args.prompt, args.format, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_p=args.top_p, seed=args.seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
