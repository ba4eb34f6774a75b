"""ExecuTorch layout for Android: extract delegate blobs into segments aligned to 16 KB.

Android 15+ devices may use 16 KB memory pages. ExecuTorch can memory-map a .pte (``MmapDataLoader``) only
where each segment starts on a page boundary, so the XNNPACK blob is mapped instead of copied into RAM.
``ExecutorchBackendConfig(extract_delegate_segments=True, segment_alignment=16384)`` does that at
serialization; this configure-stage transform sets ``BuildState.executorch_backend_config`` for the ExecuTorch
backend, and ``executorch-alignment`` checks the written file.
"""

from __future__ import annotations

from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState, EtBackendConfig
from edgeq.targetspec import ExecutorchSpec, Target

NAME = "executorch-layout"
ANDROID_PAGE = 16384  # bytes: Android 15 16 KB page size support (developer.android.com/guide/practices/page-sizes)


def segment_alignment(target: Target) -> int:
    return int(target.spec(ExecutorchSpec).segment_alignment or ANDROID_PAGE)


@register_stage(NAME, StageKind.TRANSFORM, "configure", formats=("pte",), applies_to=lambda t: t.os == "android",
                description="extract delegate segments aligned to 16 KB pages (Android 15+) so the .pte can be mmapped",
                declares=Declares(writes=("executorch_backend_config",)))
def executorch_layout(ctx: BuildState) -> StageResult:
    align = segment_alignment(ctx.target)
    cfg = EtBackendConfig(extract_delegate_segments=True, segment_alignment=align)
    return StageResult(NAME, changed=cfg != ctx.executorch_backend_config, details={"backend_config": cfg.kwargs()},
                       state=ctx.updated(executorch_backend_config=cfg),
                       summary=f"ExecutorchBackendConfig(extract_delegate_segments=True, segment_alignment={align})")
