"""ExecuTorch layout for Android: extract delegate blobs into segments aligned to 16 KB.

Android 15+ devices may use 16 KB memory pages. ExecuTorch can memory-map a .pte (``MmapDataLoader``) only
where each segment starts on a page boundary, so the XNNPACK blob is mapped instead of copied into RAM.
``ExecutorchBackendConfig(extract_delegate_segments=True, segment_alignment=16384)`` does that at
serialization; this configure-stage pass puts those kwargs in ``ctx.notes["executorch_backend_config"]`` for
the ExecuTorch backend, and ``executorch-alignment`` checks the written file.
"""

from __future__ import annotations

from typing import Any

from edgeq.pipeline.stage import PassContext, PassResult, register_pass

NAME = "executorch-layout"
ANDROID_PAGE = 16384  # bytes: Android 15 16 KB page size support (developer.android.com/guide/practices/page-sizes)


def segment_alignment(target: Any) -> int:
    return int(target.executorch.segment_alignment or ANDROID_PAGE)


@register_pass(NAME, stage="configure", formats=("pte",), applies_to=lambda t: t.os == "android",
               description="extract delegate segments aligned to 16 KB pages (Android 15+) so the .pte can be mmapped")
def executorch_layout(ctx: PassContext) -> PassResult:
    align = segment_alignment(ctx.target)
    cfg = {"extract_delegate_segments": True, "segment_alignment": align}
    prev = dict(ctx.notes.get("executorch_backend_config") or {})
    ctx.notes["executorch_backend_config"] = {**prev, **cfg}
    return PassResult(NAME, changed=prev != ctx.notes["executorch_backend_config"], details={"backend_config": cfg},
                      summary=f"ExecutorchBackendConfig(extract_delegate_segments=True, segment_alignment={align})")
