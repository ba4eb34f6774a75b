#!/usr/bin/env python3
"""Minimal on-device app: load the artifact an edgeq export chose for this device, from its edgeq.json.

Depends on numpy + onnxruntime only (``pip install numpy onnxruntime`` on a Raspberry Pi). It:
  1. reads ``edgeq.json`` and refuses a folder whose verdict failed (unless --allow-failed),
  2. picks the INT8 ONNX artifact and checks its sha256 (a copy gone wrong is caught before it runs),
  3. feeds inputs as the artifact's own I/O in the manifest describes them (``details.io``: names, dtypes, shapes
     — the batch is fixed at 1 on NNAPI/CoreML targets such as android-arm64) and prints the top-1 per sample.

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
    # What this file accepts (names, dtypes, shapes; batch fixed at 1 on NNAPI/CoreML targets), not the source
    # model's signature: older manifests without details.io fall back to the signature.
    inputs = (art.get("details") or {}).get("io", {}).get("inputs") or manifest["signature"]["inputs"]
    labels = None
    if args.npy:
        if len(inputs) != 1:
            print(f"edgeq_app: --npy feeds one input; the model takes {[i['name'] for i in inputs]}", file=sys.stderr)
            return 2
        feeds = {inputs[0]["name"]: np.load(args.npy, allow_pickle=False)}
    else:
        with np.load(args.export_dir / manifest["validation_data"]["inputs"]["path"], allow_pickle=False) as z:
            feeds = {i["name"]: z[i["name"]] for i in inputs}
            labels = z["labels"] if "labels" in z.files else None
    for spec in inputs:
        x = feeds[spec["name"]]
        want = [d if isinstance(d, int) else None for d in spec["shape"][1:]]
        if x.ndim != len(spec["shape"]) or any(w is not None and w != g for w, g in zip(want, x.shape[1:])):
            print(f"edgeq_app: input {spec['name']!r} has shape {list(x.shape)}; {art['name']} takes "
                  f"{spec['shape']} (first axis = samples)", file=sys.stderr)
            return 2
        feeds[spec["name"]] = x.astype(spec["dtype"], copy=False)
    n = len(next(iter(feeds.values())))
    batch = inputs[0]["shape"][0]
    step = batch if isinstance(batch, int) and batch > 0 else 64
    outs = []
    for start in range(0, n, step):
        chunk = {k: v[start:start + step] for k, v in feeds.items()}
        short = step - len(next(iter(chunk.values())))
        if short and isinstance(batch, int):  # a fixed batch > 1: pad the last chunk, drop the padding after
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in chunk.items()}
        out = sess.run(None, chunk)[0]
        outs.append(out[:step - short] if short and isinstance(batch, int) else out)
    scores = np.concatenate(outs)
    top1 = scores.reshape(n, -1).argmax(axis=1)
    print(f"{art['name']} ({art['bytes']} bytes, {art['precision']}) on {n} samples")
    print("top-1:", " ".join(map(str, top1[:20])) + (" ..." if n > 20 else ""))
    if labels is not None:
        print(f"accuracy: {(top1 == labels).mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
