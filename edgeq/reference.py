"""The float reference every artifact is compared with: torch eager for torch sources, ORT fp32 for .onnx."""

from __future__ import annotations

import numpy as np
import onnx

from edgeq.capture import Captured
from edgeq.data import Dataset
from edgeq.errors import RunnerError
from edgeq.validate.tensor_files import canonical_output_names

REF_BATCH = 64


def output_names_for(captured: Captured) -> list[str]:
    """Canonical output names: the ONNX model's own, else ``output`` / ``output_0..N``."""
    if captured.source.kind == "onnx":
        model = onnx.load(str(captured.source.onnx_file()), load_external_data=False)
        return [o.name for o in model.graph.output]
    return canonical_output_names(len(captured.program().graph_signature.user_outputs))


def reference_outputs(captured: Captured, data: Dataset, names: list[str]) -> tuple[dict[str, np.ndarray], str]:
    """Run the float model on ``data``. Returns outputs keyed by ``names`` and what produced them."""
    if captured.source.kind == "onnx":
        import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

        sess = ort.InferenceSession(str(captured.source.onnx_file()), providers=["CPUExecutionProvider"])
        dim0 = sess.get_inputs()[0].shape[0]
        step = REF_BATCH if not isinstance(dim0, int) else max(1, dim0)
        chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for start in range(0, len(data), step):
            feeds = {k: v[start:start + step] for k, v in data.inputs.items()}
            for n, v in zip(names, sess.run(names, feeds), strict=True):
                chunks[n].append(v)
        return {n: np.concatenate(v) for n, v in chunks.items()}, f"onnxruntime {ort.__version__} (float .onnx source)"
    import torch  # heavy: torch, imported only where a model is built or run
    from torch.utils._pytree import tree_flatten

    module = captured.source.module if captured.source.kind == "factory" else None
    if module is None:
        module = captured.program().module()
    step = REF_BATCH if captured.dynamic_batch else 1
    chunks = {n: [] for n in names}
    with torch.no_grad():
        for start in range(0, len(data), step):
            args = tuple(torch.from_numpy(np.ascontiguousarray(data.inputs[s.name][start:start + step]))
                         for s in captured.signature)
            try:
                out, _ = tree_flatten(module(*args))
            except Exception as e:
                raise RunnerError(f"the float model failed on evaluation data: {type(e).__name__}: {e}") from e
            if len(out) != len(names):
                raise RunnerError(f"the float model returned {len(out)} outputs, expected {len(names)}")
            for n, v in zip(names, out, strict=True):
                chunks[n].append(v.detach().float().numpy() if v.dtype.is_floating_point else v.numpy())
    return {n: np.concatenate(v) for n, v in chunks.items()}, f"torch {torch.__version__} eager (float)"
