"""One interface over the float PyTorch model, the ONNX KV-cache model and the .pte: ``forward(ids, start)``
feeds tokens at absolute positions ``start..start+T-1`` through the runner's KV cache and returns [T, vocab]
logits. ``reset()`` forgets the cache."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, SupportsInt

import numpy as np

from edgeq.errors import ArtifactError, RunnerError
from edgeq.llm.hf import HFModel

if TYPE_CHECKING:
    from transformers import DynamicCache


class LmRunner(Protocol):
    max_context: int

    def reset(self) -> None: ...

    def forward(self, ids: np.ndarray, start: int) -> np.ndarray: ...


class TorchLM:
    """The float reference: the transformers model with its own dynamic cache."""

    def __init__(self, model: HFModel, max_context: int) -> None:
        self.model = model
        self.max_context = max_context
        self._cache: DynamicCache | None = None

    def reset(self) -> None:
        self._cache = None

    def forward(self, ids: np.ndarray, start: int) -> np.ndarray:
        # heavy: transformers, only for Hugging Face and language models
        import torch
        from transformers import DynamicCache

        if self._cache is None:
            self._cache = DynamicCache(config=self.model.config)
        t = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))[None]
        pos = torch.arange(start, start + t.shape[1])
        with torch.no_grad():
            out = self.model(input_ids=t, past_key_values=self._cache, use_cache=True, cache_position=pos)
        self._cache = out.past_key_values
        return np.asarray(out.logits[0].float().numpy())


class OnnxLM:
    """onnxruntime-genai layout: input_ids, attention_mask, past_key_values.N.key/.value -> logits, present.N.*

    Sliding-window families (Gemma 2/3: genai_config ``sliding_window``) run with a fixed-capacity cache, as
    onnxruntime-genai does (``past_present_share_buffer``): GroupQueryAttention's windowed layers refuse a past
    shorter than the window ("KV cache capacity (0) must be at least local_window_size"), so the past is a
    zero-filled [1, kv_heads, capacity, head_dim] buffer whose first ``start`` positions hold the cache, the
    attention mask's length tells the op how many are valid, and the present (same capacity) comes back with the
    new positions written at ``start``."""

    def __init__(self, folder: Path, max_context: int = 4096, threads: int = 0) -> None:
        import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

        path = Path(folder) / "model.onnx"
        if not path.is_file():
            raise ArtifactError(f"{path} not found", "export with --format onnx first")
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtifactError(f"onnxruntime cannot load {path}: {e}") from e
        self.past_names = [i.name for i in self.sess.get_inputs() if i.name.startswith("past_key_values.")]
        self.present_names = [o.name for o in self.sess.get_outputs() if o.name.startswith("present.")]
        shape = next(i.shape for i in self.sess.get_inputs() if i.name.startswith("past_key_values."))
        self.kv_heads = int(shape[1])
        self.head_dim = _head_dim(folder, shape)
        self.inputs = {i.name for i in self.sess.get_inputs()}
        self.max_context = max_context
        window = _sliding_window(folder)
        # 0: a growing past (plain layout); else the fixed capacity of the windowed layout
        self.capacity = max(window, max_context) if window else 0
        self.reset()

    def reset(self) -> None:
        empty = np.zeros((1, self.kv_heads, self.capacity, self.head_dim), dtype=np.float32)
        self._past = {n: empty for n in self.past_names}
        self._len = 0

    def forward(self, ids: np.ndarray, start: int) -> np.ndarray:
        if start > self._len:
            raise RunnerError(f"the ONNX cache holds {self._len} positions; cannot continue at {start}")
        t = len(ids)
        if self.capacity and start + t > self.capacity:
            raise RunnerError(f"position {start + t} exceeds the ONNX runner's cache capacity ({self.capacity})",
                              "open the runner with a larger max_context")
        if start < self._len and not self.capacity:
            # rewind: drop the cached positions >= start (as the .pte overwrites them); with a fixed capacity the
            # mask length hides them and the op overwrites them at ``start``
            self._past = {n: p[:, :, :start] for n, p in self._past.items()}
        feeds: dict[str, np.ndarray] = {"input_ids": np.asarray(ids, dtype=np.int64)[None],
                                        "attention_mask": np.ones((1, start + t), dtype=np.int64)}
        if "position_ids" in self.inputs:
            feeds["position_ids"] = np.arange(start, start + t, dtype=np.int64)[None]
        feeds.update(self._past)
        outs = self.sess.run(["logits", *self.present_names], feeds)
        for past, present in zip(self.past_names, outs[1:], strict=True):
            self._past[past] = present
        self._len = start + t
        return np.asarray(outs[0][0], dtype=np.float32)


def _sliding_window(folder: Path) -> int:
    cfg = Path(folder) / "genai_config.json"
    if not cfg.is_file():
        return 0
    sw = json.loads(cfg.read_text())["model"]["decoder"].get("sliding_window") or {}
    return int(sw.get("window_size", 0))


def _head_dim(folder: Path, shape: Sequence[int | str | None]) -> int:
    if isinstance(shape[3], int):
        return int(shape[3])

    cfg = json.loads((Path(folder) / "genai_config.json").read_text())
    return int(cfg["model"]["decoder"]["head_size"])


class PteLM:
    """An ExecuTorch LLM-convention program: forward(tokens [1, T], input_pos [1]) -> logits [1, T, V], static
    KV cache inside. Positions overwrite the cache, so reset() has nothing to clear."""

    def __init__(self, path: Path) -> None:
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (llama::custom_sdpa, update_cache)
        import executorch.kernels.quantized  # noqa: F401  (registers embedding_byte & co for the runtime)
        from executorch.runtime import Runtime  # optional: the [executorch] extra

        if not Path(path).is_file():
            raise ArtifactError(f"{path} not found", "export with --format pte first")
        try:
            self.program = Runtime.get().load_program(Path(path))
            self.method = self.program.load_method("forward")
        except RuntimeError as e:
            raise ArtifactError(f"ExecuTorch cannot load {path}: {e}") from e
        self.meta = {name: self._const(name) for name in self.program.method_names if name.startswith(("get_", "use_"))}
        self.max_context = self._meta_int("get_max_context_len", self._meta_int("get_max_seq_len", 128))
        self.max_tokens = self._meta_int("get_max_seq_len", self.max_context) - 1

    def _const(self, name: str) -> object:
        out = self.program.load_method(name).execute([])
        return out[0] if len(out) == 1 else list(out)

    def _meta_int(self, name: str, default: int) -> int:
        value = self.meta.get(name, default)
        if not isinstance(value, SupportsInt):
            raise ArtifactError(f"the program's {name}() is not an integer (got {type(value).__name__})",
                                "re-export the .pte with edgeq")
        return int(value)

    def reset(self) -> None:
        return None

    def forward(self, ids: np.ndarray, start: int) -> np.ndarray:
        import torch  # heavy: torch, imported only where a model is built or run

        if start + len(ids) > self.max_context:
            raise RunnerError(f"position {start + len(ids)} exceeds the program's KV cache ({self.max_context})",
                              "export with a larger --max-context")
        chunks = []
        for i in range(0, len(ids), self.max_tokens):
            piece = torch.from_numpy(np.ascontiguousarray(ids[i:i + self.max_tokens], dtype=np.int64))[None]
            out = self.method.execute([piece, torch.tensor([start + i], dtype=torch.long)])[0]
            chunks.append(out.reshape(-1, out.shape[-1]).float().numpy())
        return np.concatenate(chunks, axis=0)


def open_runner(path: Path, fmt: str) -> LmRunner:
    return OnnxLM(path) if fmt == "onnx" else PteLM(path)
