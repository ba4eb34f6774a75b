"""``edgeq inspect MODEL``: show a model's input names, dtypes and shapes (what DATA must contain)."""

from __future__ import annotations

import argparse

from edgeq.source import load_source


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="show a model's inputs (names, dtypes, shapes) so you can build DATA",
                       description="Resolve MODEL and print the input names, dtypes and shapes the calibration "
                                   ".npz must use.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a .pt2 whose members need pickle (runs any code in the file; only for your own files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    src = load_source(args.model, args.trust_pickle)
    print(f"model: {src.ref} ({src.kind}, sha256 {src.sha256[:12]})")
    if src.declared_signature:
        for s in src.declared_signature:
            print(f"  input {s.name}: {s.dtype} {list(s.shape)}")
    else:
        print("  inputs (from forward()): " + ", ".join(src.input_names))
        print("  shapes and dtypes come from the data: key each .npz array by these names, first axis = samples")
    return 0
