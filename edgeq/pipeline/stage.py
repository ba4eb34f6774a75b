"""Pass registry. A pass is one small file that registers itself by name; a duplicate name is an error.

Stages, in pipeline order:
  ``configure``  — choose options before anything is built (e.g. the quantization scheme per ISA);
  ``pre_quant``  — rewrite the float ONNX graph before quantization (fusions, fixed shapes);
  ``post_quant`` — rewrite the quantized graph;
  ``artifact``   — derive files or analyses from finished artifacts (.ort, fp16, usability, budget, layout).
A pass declares the formats it handles and which targets it applies to; a target lists the passes it wants,
in order. The pipeline records each pass that ran, with what it changed, in the manifest.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgeq.errors import PassError

Stage = Literal["configure", "pre_quant", "post_quant", "artifact"]
STAGES: tuple[Stage, ...] = ("configure", "pre_quant", "post_quant", "artifact")


@dataclass
class PassContext:
    """What a pass may read and change. ``model_path`` is the current graph for graph stages."""

    target: Any  # edgeq.targets.Target
    fmt: str
    workdir: Path
    quant: Any  # edgeq.config.QuantOptions — configure passes return a replacement via PassResult.quant
    model_path: Path | None = None
    calib: Any = None  # edgeq.data.Dataset
    eval: Any = None  # edgeq.data.Dataset
    artifacts: list[Any] = field(default_factory=list)  # edgeq.manifest.Artifact, for the artifact stage
    captured: Any = None  # edgeq.capture.Captured
    notes: dict[str, Any] = field(default_factory=dict)  # shared scratch between passes of one run


@dataclass
class PassResult:
    name: str
    changed: bool
    summary: str  # one line for the terminal and the report
    details: dict[str, Any] = field(default_factory=dict)
    quant: Any = None  # new QuantOptions (configure stage)
    new_artifacts: list[Any] = field(default_factory=list)
    verdict_failures: list[str] = field(default_factory=list)  # e.g. over the storage budget

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "changed": self.changed, "summary": self.summary, "details": self.details,
                "failures": list(self.verdict_failures)}


PassFn = Callable[[PassContext], PassResult]


@dataclass(frozen=True)
class PassSpec:
    name: str
    stage: Stage
    formats: tuple[str, ...]
    description: str
    fn: PassFn
    applies_to: Callable[[Any], bool] = lambda target: True

    def run(self, ctx: PassContext) -> PassResult:
        try:
            return self.fn(ctx)
        except PassError:
            raise
        except KeyboardInterrupt:
            raise
        except Exception as e:
            raise PassError(f"pass {self.name!r} failed: {type(e).__name__}: {str(e)[:300]}",
                            f"remove {self.name!r} from the target's pass list to skip it") from e


_REGISTRY: dict[str, PassSpec] = {}
_LOADED = False


def register_pass(name: str, stage: Stage, formats: tuple[str, ...], description: str,
                  applies_to: Callable[[Any], bool] | None = None) -> Callable[[PassFn], PassFn]:
    if stage not in STAGES:
        raise ValueError(f"unknown pass stage {stage!r}")

    def deco(fn: PassFn) -> PassFn:
        if name in _REGISTRY:
            raise PassError(f"pass name {name!r} is registered twice "
                            f"({_REGISTRY[name].fn.__module__} and {fn.__module__})")
        _REGISTRY[name] = PassSpec(name, stage, formats, description, fn, applies_to or (lambda t: True))
        return fn

    return deco


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import edgeq.stages as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"edgeq.stages.{info.name}")


def pass_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_pass(name: str) -> PassSpec:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PassError(f"unknown pass {name!r}", f"registered: {', '.join(sorted(_REGISTRY))}") from None


def passes_for(target: Any, stage: Stage, fmt: str) -> list[PassSpec]:
    """The target's passes for one stage and format, in the target's order."""
    _load_all()
    out = []
    for name in target.passes:
        spec = get_pass(name)
        if spec.stage == stage and fmt in spec.formats and spec.applies_to(target):
            out.append(spec)
    return out


def apply_stage(stage: Stage, ctx: PassContext, log: list[dict[str, Any]]) -> PassContext:
    """Run the target's passes of one stage in order; configure passes may replace ``ctx.quant``."""
    for spec in passes_for(ctx.target, stage, ctx.fmt):
        result = spec.run(ctx)
        if result.quant is not None:
            ctx.quant = result.quant
        ctx.artifacts.extend(result.new_artifacts)
        log.append({"stage": stage, "format": ctx.fmt, **result.to_dict()})
    return ctx
