"""Device-side decode speed of an onnxruntime-genai-layout LM (numpy + onnxruntime only, no edgeq): prefill a
prompt, then decode greedily one token at a time through the KV cache (past_key_values.N -> present.N).

    python3 lm_decode_onnx.py MODEL_DIR PROMPT_IDS [--decode-tokens N] [--threads T]

PROMPT_IDS is comma-separated token ids. Prints ``EDGEQ_RESULT {json}`` with prefill / decode tokens per second,
the median decode step and the generated ids (so the caller can check them against the host)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    import onnxruntime as ort  # heavy: onnxruntime, imported when the script runs (as run_onnx.py does)

    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("prompt_ids")
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(str(a.model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in sess.get_inputs()}
    past_names = [n for n in ins if n.startswith("past_key_values.")]
    present = [o.name for o in sess.get_outputs() if o.name.startswith("present.")]
    shape = ins[past_names[0]].shape
    head = shape[3] if isinstance(shape[3], int) else int(
        json.loads((a.model_dir / "genai_config.json").read_text())["model"]["decoder"]["head_size"])
    past = {n: np.zeros((1, int(shape[1]), 0, head), dtype=np.float32) for n in past_names}

    def step(ids: list[int], start: int) -> np.ndarray:
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64),
                 "attention_mask": np.ones((1, start + len(ids)), dtype=np.int64), **past}
        if "position_ids" in ins:
            feeds["position_ids"] = np.arange(start, start + len(ids), dtype=np.int64)[None]
        outs = sess.run(["logits", *present], feeds)
        past.update(zip(past_names, outs[1:], strict=True))
        return np.asarray(outs[0][0, -1])

    prompt = [int(t) for t in a.prompt_ids.split(",") if t.strip()]
    t0 = time.perf_counter()
    logits = step(prompt, 0)
    prefill_s = time.perf_counter() - t0
    generated, times = [], []
    for i in range(a.decode_tokens):
        tok = int(logits.argmax())
        generated.append(tok)
        t0 = time.perf_counter()
        logits = step([tok], len(prompt) + i)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print("EDGEQ_RESULT " + json.dumps({
        "prefill_tokens_per_s": round(len(prompt) / prefill_s, 2), "decode_tokens_per_s": round(1 / med, 2),
        "decode_ms_per_token": round(1000 * med, 3), "decode_tokens": a.decode_tokens, "generated": generated,
        "machine": platform.machine(), "runtime": f"onnxruntime {ort.__version__}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
