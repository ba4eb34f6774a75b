"""Check each finished artifact against the target's storage and RAM budgets.

Storage: the artifact's bytes against ``storage_mb``. RAM: the weights (initializers; for a .pte the whole
file, which the runtime loads or maps) plus an estimate of peak activation memory, against ``ram_mb``.
For ONNX the peak is a liveness walk over the graph at batch 1: each tensor is live from the node that
produces it to its last consumer; the peak of the live bytes is what an ideal planner needs (ONNX Runtime's
arena adds fragmentation on top, so this is a lower bound). For a .pte it is exact: ExecuTorch plans its
activation arenas ahead of time and records their sizes (``non_const_buffer_sizes``) in the program.
Over budget is a failed verdict with the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import onnx
from onnx import helper

from edgeq.executorch.layout import read_layout
from edgeq.jsontypes import JSONObject, get_int
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState

if TYPE_CHECKING:
    import onnx

    from edgeq.manifest import Artifact

NAME = "budget-check"
MB = 1024 * 1024
_FAMILY = {"onnx": ("onnx", "ort"), "pte": ("pte", "bpte")}


class MemoryEstimate(TypedDict):
    """What an artifact needs in RAM at batch 1, and how that was estimated."""

    weights_bytes: int
    peak_activation_bytes: int
    tensors_without_shape: int  # ONNX tensors shape inference left unsized (counted as 0 bytes)
    method: str


def onnx_memory_estimate(path: Path) -> MemoryEstimate:
    """Weights bytes and a liveness-based peak activation estimate at batch 1 (symbolic dims set to 1)."""
    model = onnx.load(str(path))
    weights = sum(_tensor_proto_bytes(t) for t in model.graph.initializer)
    init_names = {t.name for t in model.graph.initializer}
    for vi in [*model.graph.input, *model.graph.output]:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") or not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001  an estimate: fall back to whatever shapes the file carries
        inferred = model
    sizes: dict[str, int | None] = {}
    for vi in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        tt = vi.type.tensor_type
        dims = [int(d.dim_value) for d in tt.shape.dim if d.HasField("dim_value")]
        if not tt.HasField("shape") or len(dims) != len(tt.shape.dim):
            sizes[vi.name] = None
            continue
        n = 1
        for d in dims:
            n *= d
        sizes[vi.name] = n * helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize
    last_use: dict[str, int] = {}
    for i, node in enumerate(inferred.graph.node):
        for x in node.input:
            last_use[x] = i
    keep = {o.name for o in inferred.graph.output}
    # Constant subgraphs (e.g. DequantizeLinear of an int8 weight) are folded into the weights when the
    # runtime loads the model (constant folding / QDQ fusion), so they are not activations.
    const = set(init_names)
    for node in inferred.graph.node:
        if all(x in const for x in node.input if x):
            const.update(o for o in node.output if o)
    live: dict[str, int] = {i.name: sizes.get(i.name) or 0 for i in inferred.graph.input if i.name not in init_names}
    peak = cur = sum(live.values())
    unknown = 0
    for i, node in enumerate(inferred.graph.node):
        for o in node.output:
            if not o or o in const:
                continue
            b = sizes.get(o)
            if b is None:
                unknown += 1
                b = 0
            live[o] = b
            cur += b
        peak = max(peak, cur)
        for x in set(node.input):
            if x in live and last_use.get(x) == i and x not in keep:
                cur -= live.pop(x)
    return {"weights_bytes": int(weights), "peak_activation_bytes": int(peak), "tensors_without_shape": unknown,
            "method": "liveness over graph order at batch 1 (lower bound of the runtime arena)"}


def _tensor_proto_bytes(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    try:
        return n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except Exception:  # noqa: BLE001  exotic dtypes (int4, string): count the raw payload
        return len(t.raw_data)


def pte_memory_estimate(path: Path) -> MemoryEstimate:
    lay = read_layout(path)
    return {"weights_bytes": lay.file_bytes, "peak_activation_bytes": max(lay.planned_memory_bytes, default=0),
            "tensors_without_shape": 0, "method": "ExecuTorch memory plan (non_const_buffer_sizes), exact"}


def check_artifact(art: Artifact, outdir: Path, storage_mb: int, ram_mb: int) -> tuple[JSONObject, list[str]]:
    p = outdir / art.path
    size = p.stat().st_size
    row: JSONObject = {"artifact": art.name, "bytes": size, "storage_budget_bytes": storage_mb * MB}
    failures = []
    if size > storage_mb * MB:
        failures.append(f"{art.name} is {size / MB:.2f} MB, over the target's storage budget of {storage_mb} MB")
    mem = None
    if art.format == "onnx":
        mem = onnx_memory_estimate(p)
    elif art.format == "pte":
        mem = pte_memory_estimate(p)
    if mem is not None:
        ram = mem["weights_bytes"] + mem["peak_activation_bytes"]
        row.update(**mem, ram_estimate_bytes=ram, ram_budget_bytes=ram_mb * MB)
        if ram > ram_mb * MB:
            failures.append(f"{art.name} needs ~{ram / MB:.2f} MB RAM (weights {mem['weights_bytes'] / MB:.2f} MB + "
                            f"peak activations {mem['peak_activation_bytes'] / MB:.2f} MB), over the target's "
                            f"{ram_mb} MB")
    row["within_budget"] = not failures
    return row, failures


@register_stage(NAME, StageKind.CHECK, "artifact", formats=("onnx", "pte"),
                description="artifact bytes vs storage_mb; weights + peak activation estimate vs ram_mb",
                declares=Declares(reads=("artifacts",)))
def budget_check(ctx: BuildState) -> StageResult:
    t = ctx.target
    rows: list[JSONObject] = []
    failures: list[str] = []
    for art in ctx.artifacts:
        if art.format not in _FAMILY.get(ctx.fmt, (ctx.fmt,)):
            continue
        row, fails = check_artifact(art, ctx.workdir, t.storage_mb, t.ram_mb)
        rows.append(row)
        failures += fails
    noted: dict[str, JSONObject] = {
        a.name: {"budget": {k: v for k, v in row.items() if k != "artifact"}}
        for a, row in zip([a for a in ctx.artifacts if a.format in _FAMILY.get(ctx.fmt, (ctx.fmt,))], rows,
                          strict=True)}
    worst_ram = max((get_int(r, "ram_estimate_bytes") for r in rows if "ram_estimate_bytes" in r), default=0)
    largest = max((get_int(r, "bytes") for r in rows), default=0)
    summary = (f"{len(rows)} artifact(s): largest {largest / MB:.2f} MB of {t.storage_mb} MB storage, "
               f"RAM estimate up to {worst_ram / MB:.2f} MB of {t.ram_mb} MB"
               + ("" if not failures else f" — {len(failures)} over budget"))
    return StageResult(NAME, changed=False, summary=summary, details={"artifacts": rows, "storage_mb": t.storage_mb,
                                                                      "ram_mb": t.ram_mb},
                      verdict_failures=tuple(failures), artifact_details=noted)
