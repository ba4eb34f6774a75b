"""The grid strategy (``edgeq sweep``): every variant of a fixed grid is built and kept, none is dropped.

It runs in the SELECT phase of the ONNX build like the search, from the same pre-processed graph and calibration
set, through the same build path (the ONNX backend's ``build``, :class:`edgeq.backends.base.FormatBackend`): a
sweep row and an export of the same recipe are the same bytes. The variants then pass through the target's artifact stages and every runner like any
other candidate; :mod:`edgeq.sweep` adds the table, the Pareto fronts and the engine's pick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeq.backends.base import get_backend
from edgeq.backends.onnx import OnnxBuildInputs, graph_stats, rename_outputs
from edgeq.config import CalibrationMethod, QuantOptions
from edgeq.data import Dataset
from edgeq.errors import EdgeqError
from edgeq.jsontypes import JSONObject
from edgeq.manifest import Artifact
from edgeq.onnx.fp16 import convert_fp16
from edgeq.progress import Progress
from edgeq.recipe import Recipe
from edgeq.search.patterns import Neighbourhood, fragile_nodes
from edgeq.search.sensitivity import NodeSensitivity, onnx_sensitivity, sensitivity_table

VARIANT_DIR = "variants"
MIXED_TOP_K = 8  # the most sensitive nodes' inputs and outputs at 16-bit activations in the mixed variant


@dataclass(frozen=True)
class GridInputs:
    workdir: Path  # the export's temporary output folder
    prepped: Path  # the pre-processed float graph the export's INT8 model came from
    calib: Dataset
    base: QuantOptions  # the first static model's resolved settings
    output_names: tuple[str, ...]
    sensitivity_samples: int
    with_fp16: bool  # False when the target's own fp16-variant stage writes the fp16 model


def static_variants(base: QuantOptions, patterns: dict[str, list[str]]) -> list[tuple[str, QuantOptions]]:
    """The static rows: each other calibration method, the other weight granularity, fragile patterns float."""
    methods: tuple[CalibrationMethod, ...] = ("minmax", "percentile", "entropy")
    out = [(f"onnx-int8-static-{m}", replace(base, calibration=m)) for m in methods if m != base.calibration]
    other = "per-tensor" if base.per_channel else "per-channel"
    out.append((f"onnx-int8-static-{other}", replace(base, per_channel=not base.per_channel)))
    fragile = tuple(n for names in patterns.values() for n in names)
    if fragile:
        out.append(("onnx-int8-static-fragile-fp32",
                    replace(base, nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *fragile))))))
    return out


def onnx_grid(g: GridInputs, first: Artifact, progress: Progress) -> tuple[list[Artifact], list[JSONObject]]:
    """Build the grid; returns the variants (role candidate, under ``variants/``) and the sensitivity ranking."""
    (g.workdir / VARIANT_DIR).mkdir(exist_ok=True)
    new: list[Artifact] = []

    def add(name: str, precision: str, build: Callable[[Path], JSONObject]) -> None:
        rel = f"{VARIANT_DIR}/{name}.onnx"
        progress.stage(f"sweep: building {name}")
        try:
            info = build(g.workdir / rel)
        except EdgeqError as e:  # one variant failing must not sink the sweep; it is said out loud
            progress.stage(f"  -> skipped: {e.cause}")
            return
        rename_outputs(g.workdir / rel, list(g.output_names))
        a = Artifact(name=name, path=rel, format="onnx", precision=precision, role="candidate",
                     # a recipe's record is the same as an export's artifact: the recipe that rebuilds this file
                     quantization=info,
                     details=graph_stats(g.workdir / rel))
        new.append(a.refresh(g.workdir))

    if g.with_fp16:
        add("onnx-fp16", "fp16", lambda p: {"method": "fp16", **convert_fp16(g.workdir / "model.fp32.onnx", p)})
    dyn = replace(g.base, mode="dynamic", int16_activation_nodes=(), dynamic_linears=False)
    add("onnx-int8-dynamic", "int8-dynamic", _builder(g, dyn))
    for name, q in static_variants(g.base, fragile_nodes(g.prepped)):
        add(name, "int8-static", _builder(g, q))
    ranking = _ranking(g, first, progress)
    if ranking:
        hood = Neighbourhood(g.prepped)
        q16 = replace(g.base, int16_activation_nodes=tuple(dict.fromkeys(
            n for s in ranking[:MIXED_TOP_K] for n in hood.with_input_producers(s.node))))
        add("onnx-mixed-int16", "mixed", _builder(g, q16))
    return new, sensitivity_table(ranking)


def _builder(g: GridInputs, q: QuantOptions) -> Callable[[Path], JSONObject]:
    """The variant of ``q`` built by the ONNX backend (its record: the export's ``quantization``, recipe included)."""
    inputs = OnnxBuildInputs(calib=g.calib, prepped=g.prepped, output_names=g.output_names)
    return lambda path: get_backend("onnx").build(inputs, Recipe.from_quant_options(q), path).record


def _ranking(g: GridInputs, first: Artifact, progress: Progress) -> list[NodeSensitivity]:
    try:
        return onnx_sensitivity(g.prepped, g.workdir / first.path, g.calib, max_samples=g.sensitivity_samples)
    except Exception as e:  # noqa: BLE001  no ranking -> no mixed-precision variant, said out loud
        progress.stage(f"note: no onnx-mixed-int16 variant: the sensitivity analysis failed "
                       f"({type(e).__name__}: {str(e)[:200]})")
        return []

