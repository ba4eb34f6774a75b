#!/usr/bin/env python3
"""Minimal on-device app: load the artifact an edgeq export chose for this device, from its edgeq.json.

Depends on numpy + onnxruntime only (``pip install numpy onnxruntime`` on a Raspberry Pi). It:
  1. reads ``edgeq.json`` and refuses a folder whose verdict failed (unless --allow-failed),
  2. picks the INT8 ONNX artifact and checks its sha256 (a copy gone wrong is caught before it runs),
  3. feeds inputs as the manifest's I/O signature describes them and prints the top-1 class per sample.

Usage:
  python3 edgeq_app.py EXPORT_DIR                 # runs the export's own validation inputs, reports accuracy
  python3 edgeq_app.py EXPORT_DIR --npy x.npy     # your own samples for the (single) input, first axis = samples
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pick_artifact(manifest: dict) -> dict:
    onnx = [a for a in manifest["artifacts"] if a["format"] == "onnx" and a["role"] == "candidate"]
    int8 = [a for a in onnx if a["precision"].startswith("int8")]
    if not (int8 or onnx):
        raise SystemExit("edgeq_app: the export has no ONNX candidate artifact (was it exported with --format pte?)")
    return (int8 or onnx)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--npy", type=Path, help="samples for the model's single input (first axis = samples)")
    ap.add_argument("--allow-failed", action="store_true", help="run even if the export's verdict failed")
    args = ap.parse_args(argv)

    manifest = json.loads((args.export_dir / "edgeq.json").read_text())
    if not manifest["verdict"]["passed"] and not args.allow_failed:
        print("edgeq_app: this export FAILED its accuracy budget:", *manifest["verdict"]["failures"], sep="\n  ",
              file=sys.stderr)
        return 1
    art = pick_artifact(manifest)
    model = args.export_dir / art["path"]
    if sha256(model) != art["sha256"]:
        print(f"edgeq_app: {model} does not match edgeq.json (sha256); re-copy the export folder", file=sys.stderr)
        return 2

    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inputs = manifest["signature"]["inputs"]
    labels = None
    if args.npy:
        if len(inputs) != 1:
            print(f"edgeq_app: --npy feeds one input; the model takes {[i['name'] for i in inputs]}", file=sys.stderr)
            return 2
        feeds = {inputs[0]["name"]: np.load(args.npy, allow_pickle=False).astype(inputs[0]["dtype"])}
    else:
        with np.load(args.export_dir / manifest["validation_data"]["inputs"]["path"], allow_pickle=False) as z:
            feeds = {i["name"]: z[i["name"]] for i in inputs}
            labels = z["labels"] if "labels" in z.files else None
    n = len(next(iter(feeds.values())))
    fixed_batch = inputs[0]["shape"][0] == 1
    outs = []
    for start in range(0, n, 1 if fixed_batch else 64):
        step = 1 if fixed_batch else 64
        outs.append(sess.run(None, {k: v[start:start + step] for k, v in feeds.items()})[0])
    scores = np.concatenate(outs)
    top1 = scores.reshape(n, -1).argmax(axis=1)
    print(f"{art['name']} ({art['bytes']} bytes, {art['precision']}) on {n} samples")
    print("top-1:", " ".join(map(str, top1[:20])) + (" ..." if n > 20 else ""))
    if labels is not None:
        print(f"accuracy: {(top1 == labels).mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
