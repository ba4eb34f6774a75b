"""The target's checks on a text-generation export: storage, RAM (weights + the KV cache at --max-context) and,
for ``.pte`` on Android, the 16 KB segment layout (the registered ``executorch-alignment`` stage itself).

LM artifacts skip the target's emitters: onnxruntime-genai loads ``.onnx`` folders (no ``.ort`` conversion), and
the fp16 GPU variant is a tensor-model feature. Each check's record has the shape of the pipeline's pass log, so
the manifest, the report and ``edgeq check`` read it like any export's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeq.config import QuantOptions
from edgeq.jsontypes import JSONObject, get_object, get_str
from edgeq.llm.hf import HFConfig
from edgeq.manifest import Artifact
from edgeq.pipeline.stage import get_stage
from edgeq.pipeline.state import BuildState, EtBackendConfig
from edgeq.targetspec import ExecutorchSpec, Target

MB = 1024 * 1024
KV_BYTES_PER_VALUE = 4  # both runtimes keep the KV cache in float32 here


@dataclass(frozen=True)
class KvShape:
    layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config: HFConfig) -> KvShape:
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        return cls(int(config.num_hidden_layers), int(getattr(config, "num_key_value_heads", None) or heads), head_dim)

    def cache_bytes(self, context: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * context * KV_BYTES_PER_VALUE


def backend_config(target: Target) -> EtBackendConfig:
    """The ``.pte`` layout the target asks for: extracted delegate segments, on its page size when it has one."""
    return EtBackendConfig(extract_delegate_segments=True, segment_alignment=target.spec(ExecutorchSpec).segment_alignment)


@dataclass(frozen=True)
class LmItem:
    """One shipped LM artifact as the checks see it: ``root`` is its file (.pte) or folder (ONNX), under OUTDIR."""

    name: str
    format: str
    root: str
    main: str  # the runtime's entry file (.pte, or the folder's model.onnx)


def items_from_manifest(artifacts: list[JSONObject]) -> list[LmItem]:
    return [LmItem(get_str(a, "name"), get_str(a, "format"), get_str(get_object(a, "details"), "folder"),
                   get_str(a, "path")) for a in artifacts]


def items_from_files(arts: list[Artifact]) -> list[LmItem]:
    """From the artifacts ``edgeq check`` recomputed from the bytes (their paths already confined to OUTDIR)."""
    return [LmItem(a.name, a.format, a.path if a.format == "pte" else str(Path(a.path).parent), a.path)
            for a in arts if a.format in ("onnx", "pte")]


def run_checks(target: Target, out: Path, items: list[LmItem], kv: KvShape | None,
               context: int) -> list[JSONObject]:
    """The pass-log entries of the target's checks over the shipped LM artifacts (``kv``: None when the model's
    config is not at hand — ``edgeq check`` — and the RAM estimate is then the weights alone, said so)."""
    log = [_budget(target, out, items, kv, context)]
    stage = get_stage("executorch-alignment")
    pte = [Artifact(name=i.name, path=i.main, format="pte", precision="int", role="candidate")
           for i in items if i.format == "pte"]
    if pte and stage.name in target.passes and stage.applies_to(target):
        state = BuildState(target=target, fmt="pte", workdir=out, quant=QuantOptions(), artifacts=tuple(pte),
                           executorch_backend_config=backend_config(target))
        log.append({"stage": "artifact", "kind": str(stage.kind), "format": "pte", **stage.run(state).to_dict()})
    return log


def _budget(target: Target, out: Path, items: list[LmItem], kv: KvShape | None, context: int) -> JSONObject:
    rows: list[JSONObject] = []
    sizes: list[tuple[str, int, int]] = []  # (artifact, bytes, RAM estimate) for the summary
    failures: list[str] = []
    for i in items:
        root = out / i.root
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else root.stat().st_size
        cache = kv.cache_bytes(context) if kv is not None else 0
        ram = size + cache
        rows.append({"artifact": i.name, "bytes": size, "storage_budget_bytes": target.storage_mb * MB,
                     "weights_bytes": size, "kv_cache_bytes": cache if kv is not None else None,
                     "ram_estimate_bytes": ram, "ram_budget_bytes": target.ram_mb * MB, "context": context})
        sizes.append((i.name, size, ram))
        if size > target.storage_mb * MB:
            failures.append(f"{i.name} is {size / MB:.1f} MB, over {target.name}'s storage budget of "
                            f"{target.storage_mb} MB")
        if ram > target.ram_mb * MB:
            failures.append(f"{i.name} needs ~{ram / MB:.1f} MB RAM (weights"
                            + (f" + a {context}-token KV cache" if kv is not None else "")
                            + f"), over {target.name}'s {target.ram_mb} MB")
    method = ("artifact bytes + float32 KV cache at --max-context (activations excluded)" if kv is not None
              else "artifact bytes only (the model config for the KV cache is not in the folder)")
    summary = "; ".join(f"{name}: {size / MB:.1f} MB, ~{ram / MB:.1f} MB RAM"
                        for name, size, ram in sizes) or "no artifact"
    return {"stage": "artifact", "kind": "check", "format": "llm", "name": "budget-check", "changed": False,
            "summary": summary, "details": {"artifacts": rows, "method": method}, "failures": failures}
