"""Per-artifact I/O as the shipped file declares it (``details.io`` in ``edgeq.json``).

The manifest's ``signature`` describes the source model (batch usually dynamic). A shipped artifact can differ:
``fixed-shapes`` pins the batch to 1 for NNAPI/CoreML targets, a ``.pte`` is traced at fixed sizes. Apps must feed
what the file accepts, so each artifact records the names, dtypes and shapes read from the file itself, plus the
layout and preprocessing of the matching signature input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, SupportsInt

import onnx

from edgeq.jsontypes import JSONObject, as_object, get_objects, get_str

# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h) -> numpy dtype names.
_ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
              11: "bool"}


class _TensorMeta(Protocol):
    """What ExecuTorch's runtime (untyped) reports of one input or output tensor."""

    def dtype(self) -> SupportsInt: ...

    def sizes(self) -> Sequence[SupportsInt]: ...


def _onnx_io(path: Path) -> dict[str, list[JSONObject]]:
    model = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in model.graph.initializer}

    def spec(vi: onnx.ValueInfoProto) -> JSONObject:
        tt = vi.type.tensor_type
        dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                 for d in tt.shape.dim]
        return {"name": vi.name, "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)), "shape": dims}

    return {"inputs": [spec(i) for i in model.graph.input if i.name not in init],
            "outputs": [spec(o) for o in model.graph.output]}


def _pte_io(path: Path, signature: Mapping[str, object]) -> dict[str, list[JSONObject]]:
    from executorch.runtime import Runtime  # optional: the [executorch] extra

    meta = Runtime.get().load_program(path).metadata("forward")
    names_in = [get_str(s, "name") for s in get_objects(signature, "inputs")]
    names_out = [get_str(s, "name") for s in get_objects(signature, "outputs")]

    def spec(info: _TensorMeta, i: int, names: list[str], kind: str) -> JSONObject:
        return {"name": names[i] if i < len(names) else f"{kind}_{i}",
                "dtype": _ET_DTYPES.get(int(info.dtype()), f"scalar_type_{int(info.dtype())}"),
                "shape": [int(d) for d in info.sizes()]}

    return {"inputs": [spec(meta.input_tensor_meta(i), i, names_in, "input") for i in range(meta.num_inputs())],
            "outputs": [spec(meta.output_tensor_meta(i), i, names_out, "output") for i in range(meta.num_outputs())]}


def artifact_io(path: Path, fmt: str, signature: Mapping[str, object]) -> dict[str, list[JSONObject]] | None:
    """The file's own I/O, or None for formats that are not run directly (.ort is the .onnx's twin; .bpte)."""
    if fmt == "onnx":
        io = _onnx_io(path)
    elif fmt == "pte":
        io = _pte_io(path, signature)
    else:
        return None
    by_name = {s.get("name"): s for s in get_objects(signature, "inputs")}
    for spec in io["inputs"]:
        src = by_name.get(spec["name"], {})
        spec["layout"] = src.get("layout")
        spec["preprocessing"] = src.get("preprocessing")
        shape = spec["shape"]
        spec["batch"] = shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else "dynamic"
    return io


def with_io(artifacts: Sequence[JSONObject], signature: Mapping[str, object], outdir: Path) -> tuple[JSONObject, ...]:
    """``artifacts`` with ``details.io`` filled in for every directly runnable one that lacks it (idempotent; the
    records given are not changed, an annotated one is a copy whose keys keep their order)."""
    out: list[JSONObject] = []
    for a in artifacts:
        details = as_object(a.get("details", {}), "details")
        f = outdir / get_str(a, "path")
        io = None if "io" in details or not f.is_file() else artifact_io(f, get_str(a, "format"), signature)
        out.append(a if io is None else {**a, "details": {**details, "io": io}})
    return tuple(out)
