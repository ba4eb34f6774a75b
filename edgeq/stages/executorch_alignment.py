"""Check that a .pte's data segments start on the target's page boundary (16 KB on Android 15+).

Parses the extended header and the ``Program.segments`` table (see ``edgeq.executorch.layout``). A misaligned segment
means the runtime must copy it instead of mapping it; delegate blobs left inline in the flatbuffer are
never mappable. Either is a failed verdict on targets that ask for the layout.
"""

from __future__ import annotations

from edgeq.executorch.layout import read_layout
from edgeq.jsontypes import JSONObject
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState
from edgeq.stages.executorch_layout import segment_alignment

NAME = "executorch-alignment"


@register_stage(NAME, StageKind.CHECK, "artifact", formats=("pte",), applies_to=lambda t: t.os == "android",
                description="verify .pte segment offsets are aligned to the target's page size (16 KB)",
                declares=Declares(reads=("artifacts", "executorch_backend_config")))
def executorch_alignment(ctx: BuildState) -> StageResult:
    # Check against the alignment the build used (the layout stage's choice), else the target's page size.
    align = ctx.executorch_backend_config.segment_alignment or segment_alignment(ctx.target)
    rows: list[JSONObject] = []
    failures: list[str] = []
    said: list[str] = []  # one summary clause per .pte
    noted: dict[str, JSONObject] = {}  # recorded in each .pte's manifest entry
    for a in ctx.artifacts:
        if a.format != "pte":
            continue
        lay = read_layout(ctx.workdir / a.path)
        bad = lay.misaligned(align)
        aligned = not bad and lay.inline_delegates == 0
        row: JSONObject = {
            "artifact": a.name, "segment_base_offset": lay.segment_base_offset,
            "segments": [{"offset": o, "size": s, "offset_mod_alignment": o % align} for o, s in lay.segments],
            "delegate_segments": list(lay.delegate_segments), "inline_delegates": lay.inline_delegates,
            "alignment": align, "aligned": aligned}
        noted[a.name] = {"pte_layout": row}
        rows.append(row)
        said.append(f"{a.name}: {len(lay.segments)} segment(s) at {[o for o, _ in lay.segments]}, "
                    f"{'all' if aligned else 'NOT'} {align}-byte aligned")
        for i, off in bad:
            failures.append(f"{a.name}: segment {i} starts at byte {off}, not a multiple of {align} "
                            f"(off by {off % align})")
        if lay.inline_delegates:
            failures.append(f"{a.name}: {lay.inline_delegates} delegate blob(s) stored inline in the flatbuffer "
                            "(not extracted into segments, so they cannot be memory-mapped)")
    summary = "; ".join(said) or "no .pte artifact"
    return StageResult(NAME, changed=False, summary=summary, details={"artifacts": rows}, verdict_failures=tuple(failures),
                       artifact_details=noted)
