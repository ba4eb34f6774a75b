"""Per-artifact I/O as the shipped file declares it (``details.io`` in ``edgeq.json``).

The manifest's ``signature`` describes the source model (batch usually dynamic). A shipped artifact can differ:
``fixed-shapes`` pins the batch to 1 for NNAPI/CoreML targets, a ``.pte`` is traced at fixed sizes. Apps must feed
what the file accepts, so each artifact records the names, dtypes and shapes read from the file itself, plus the
layout and preprocessing of the matching signature input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edgeq.jsontypes import JSONObject

# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h) -> numpy dtype names.
_ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
              11: "bool"}


def _onnx_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    model = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in model.graph.initializer}

    def spec(vi: Any) -> JSONObject:
        tt = vi.type.tensor_type
        dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                 for d in tt.shape.dim]
        return {"name": vi.name, "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)), "shape": dims}

    return {"inputs": [spec(i) for i in model.graph.input if i.name not in init],
            "outputs": [spec(o) for o in model.graph.output]}


def _pte_io(path: Path, signature: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    from executorch.runtime import Runtime  # optional: the [executorch] extra

    meta = Runtime.get().load_program(path).metadata("forward")
    names_in = [s["name"] for s in signature.get("inputs", [])]
    names_out = [s["name"] for s in signature.get("outputs", [])]

    def spec(info: Any, i: int, names: list[str], kind: str) -> JSONObject:
        return {"name": names[i] if i < len(names) else f"{kind}_{i}",
                "dtype": _ET_DTYPES.get(int(info.dtype()), f"scalar_type_{int(info.dtype())}"),
                "shape": [int(d) for d in info.sizes()]}

    return {"inputs": [spec(meta.input_tensor_meta(i), i, names_in, "input") for i in range(meta.num_inputs())],
            "outputs": [spec(meta.output_tensor_meta(i), i, names_out, "output") for i in range(meta.num_outputs())]}


def artifact_io(path: Path, fmt: str, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The file's own I/O, or None for formats that are not run directly (.ort is the .onnx's twin; .bpte)."""
    if fmt == "onnx":
        io = _onnx_io(path)
    elif fmt == "pte":
        io = _pte_io(path, signature)
    else:
        return None
    by_name = {s["name"]: s for s in signature.get("inputs", [])}
    for spec in io["inputs"]:
        src = by_name.get(spec["name"], {})
        spec["layout"] = src.get("layout")
        spec["preprocessing"] = src.get("preprocessing")
        spec["batch"] = spec["shape"][0] if spec["shape"] and isinstance(spec["shape"][0], int) else "dynamic"
    return io


def annotate_io(manifest: dict[str, Any], outdir: Path) -> None:
    """Fill ``details.io`` of every directly runnable artifact that lacks it (idempotent)."""
    sig = manifest.get("signature") or {}
    for a in manifest.get("artifacts") or []:
        details = a.setdefault("details", {})
        if "io" in details:
            continue
        f = outdir / a["path"]
        if f.is_file():
            io = artifact_io(f, a["format"], sig)
            if io is not None:
                details["io"] = io
