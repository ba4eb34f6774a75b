"""Read a .pte's layout without loading it: extended header, segment table, memory plan.

A .pte is a flatbuffer ``Program`` optionally followed by data segments (extracted delegate blobs, constants).
The 32-byte extended header ("eh00") after the flatbuffer root says where the segment area starts; each
``Program.segments[i].offset`` is relative to that base. ExecuTorch's serializer (exir/_serialize/_program.py)
is the reference; its private readers are used here so the layout is parsed by the code that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeq.errors import ArtifactError


@dataclass(frozen=True)
class PteLayout:
    file_bytes: int
    program_bytes: int
    segment_base_offset: int  # 0: no segments (everything inline in the flatbuffer)
    segments: tuple[tuple[int, int], ...]  # (absolute offset, size) per segment
    delegate_segments: tuple[int, ...]  # indices of segments holding delegate (e.g. XNNPACK) blobs
    inline_delegates: int  # delegate blobs stored inside the flatbuffer instead of a segment
    planned_memory_bytes: tuple[int, ...]  # per execution plan: sum of non-constant (activation) buffers

    def misaligned(self, alignment: int) -> list[tuple[int, int]]:
        return [(i, off) for i, (off, _) in enumerate(self.segments) if off % alignment]


def read_layout(path: Path) -> PteLayout:
    try:
        # optional: the [executorch] extra
        from executorch.exir._serialize._program import (
            _ExtendedHeader,
            _flatbuffer_to_program,
            _get_extended_header,
        )
        from executorch.exir.schema import DataLocation
    except ImportError as e:  # executorch is an optional dependency of the ONNX-only install
        raise ArtifactError(f"cannot inspect {path.name}: executorch is not installed", "pip install executorch") from e
    data = Path(path).read_bytes()
    try:
        eh: _ExtendedHeader | None = _get_extended_header(data)
        has_eh = bool(eh and eh.is_valid())
        program_size = eh.program_size if has_eh and eh is not None else len(data)
        base = eh.segment_base_offset if has_eh and eh is not None else 0
        program = _flatbuffer_to_program(data[:program_size])
    except Exception as e:
        raise ArtifactError(f"{path.name} is not a readable ExecuTorch program: {type(e).__name__}: {str(e)[:200]}",
                            "re-export the .pte; the file may be truncated") from e
    segments = tuple((base + s.offset, s.size) for s in program.segments)
    delegate_segments, inline = [], 0
    for plan in program.execution_plan:
        for d in plan.delegates:
            if d.processed.location == DataLocation.SEGMENT:
                delegate_segments.append(d.processed.index)
            else:
                inline += 1
    # non_const_buffer_sizes[0] is reserved (constants); the rest are the memory-planned activation arenas.
    planned = tuple(int(sum(p.non_const_buffer_sizes[1:])) for p in program.execution_plan)
    return PteLayout(file_bytes=len(data), program_bytes=program_size, segment_base_offset=base, segments=segments,
                     delegate_segments=tuple(sorted(set(delegate_segments))), inline_delegates=inline,
                     planned_memory_bytes=planned)
