"""Canonical bytes for ``.ort`` files: the same ONNX model always gives the same ORT-format flatbuffer.

Why: ONNX Runtime's converter (``InferenceSession::SaveToOrtFormat``) writes the session's
``KernelTypeStrResolver`` by iterating two absl ``flat_hash_map``s (op id -> kernel type string -> args), whose
iteration order is randomized per table instance. The child tables are created in that order and only the
offset vectors are sorted (``CreateVectorOfSortedTables``), so the logical content is equal and equally ordered
but the byte layout of that subtree differs on every conversion, even within one process. That breaks edgeq's
promise that the same command and inputs ship the same bytes (hashes in edgeq.json, signatures).

How: a flatbuffer is built back to front, and ORT builds the ``ort_version`` string and the whole ``Model``
before the resolver and the root ``InferenceSession`` table. Every offset points forward (to something built
earlier) and every table's vtable was built before or right after it, so the bytes from the Model table's start
to the end (the "tail") are self-contained and deterministic. We keep that tail verbatim at the end of a fresh
``flatbuffers.Builder`` (alignment is relative to the buffer's end, so it stays valid) and rebuild only the
resolver, in the order ORT's reader returns it (already sorted by key), and the root table on top of it.

Schema used (onnxruntime/core/flatbuffers/schema/ort.fbs; slot = field index):
  InferenceSession          {0 ort_version: string, 1 model: Model, 2 session_state (deprecated),
                             3 kernel_type_str_resolver: KernelTypeStrResolver}  file identifier "ORTM"
  KernelTypeStrResolver     {0 op_kernel_type_str_args: [OpIdKernelTypeStrArgsEntry]}
  OpIdKernelTypeStrArgsEntry{0 op_id: string (key), 1 kernel_type_str_args: [KernelTypeStrArgsEntry]}
  KernelTypeStrArgsEntry    {0 kernel_type_str: string (key), 1 args: [ArgTypeAndIndex]}
  ArgTypeAndIndex           {0 arg_type: ArgType (ubyte, INPUT = 0), 1 index: uint32}
Anything else in the root table (an unknown field, the deprecated session state) is refused, never dropped.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
from flatbuffers.number_types import Uint8Flags, Uint32Flags
from flatbuffers.table import Table

from edgeq.errors import ArtifactError

FILE_IDENTIFIER = b"ORTM"
_SESSION_FIELDS = 4  # ort_version, model, session_state (deprecated), kernel_type_str_resolver
_ORT_VERSION, _MODEL, _SESSION_STATE, _RESOLVER = range(_SESSION_FIELDS)
_MAX_SCALAR_ALIGN = 8  # the widest scalar in ort.fbs (int64 / double): the finished buffer keeps that alignment


@dataclass(frozen=True)
class KernelTypeStrArgs:
    """One ``KernelTypeStrArgsEntry``: a kernel type string and the (arg_type, index) pairs it names."""

    kernel_type_str: bytes
    args: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class OpKernelTypeStrs:
    """One ``OpIdKernelTypeStrArgsEntry``: an op id (``domain:type:since_version``) and its type strings."""

    op_id: bytes
    kernel_type_str_args: tuple[KernelTypeStrArgs, ...]


@dataclass(frozen=True)
class SessionLayout:
    """What the root table holds: positions in the buffer, and the resolver's logical content."""

    ort_version_pos: int
    model_pos: int
    tail_start: int  # where the self-contained Model + ort_version bytes begin
    resolver: tuple[OpKernelTypeStrs, ...] | None


def _field(tab: Table, slot: int) -> int:
    """The field's offset inside ``tab`` (0 when absent)."""
    return int(tab.Offset(4 + 2 * slot))


def _vtable_pos(buf: bytes, table_pos: int) -> int:
    return table_pos - int(struct.unpack_from("<i", buf, table_pos)[0])


def _table_at(tab: Table, slot: int) -> Table | None:
    o = _field(tab, slot)
    return Table(tab.Bytes, tab.Indirect(o + tab.Pos)) if o else None


def _string(tab: Table, slot: int) -> bytes:
    o = _field(tab, slot)
    if not o:
        raise ArtifactError("ORT-format model: a required string (a key) is missing")
    return bytes(tab.String(o + tab.Pos))


def _tables(tab: Table, slot: int) -> list[Table]:
    """The tables of a vector-of-tables field, in stored order."""
    o = _field(tab, slot)
    if not o:
        return []
    start = tab.Vector(o)
    return [Table(tab.Bytes, tab.Indirect(start + 4 * i)) for i in range(tab.VectorLen(o))]


def _scalar(tab: Table, slot: int, flags: type[Uint8Flags] | type[Uint32Flags]) -> int:
    o = _field(tab, slot)
    return int(tab.Get(flags, o + tab.Pos)) if o else 0  # both scalars default to 0 (INPUT, index 0)


def _read_resolver(tab: Table) -> tuple[OpKernelTypeStrs, ...]:
    ops = []
    for op in _tables(tab, 0):
        entries = []
        for entry in _tables(op, 1):
            args = tuple((_scalar(a, 0, Uint8Flags), _scalar(a, 1, Uint32Flags)) for a in _tables(entry, 1))
            entries.append(KernelTypeStrArgs(_string(entry, 0), args))
        ops.append(OpKernelTypeStrs(_string(op, 0), tuple(entries)))
    return tuple(ops)


def read_session(buf: bytes) -> SessionLayout:
    """Parse the root table of an ORT-format buffer; ``ArtifactError`` when it is not one edgeq can rewrite."""
    if buf[4:8] != FILE_IDENTIFIER:
        raise ArtifactError("not an ORT-format model (no ORTM file identifier)")
    root = Table(buf, int(struct.unpack_from("<I", buf, 0)[0]))
    vtable = _vtable_pos(buf, root.Pos)
    n_fields = (int(struct.unpack_from("<H", buf, vtable)[0]) - 4) // 2
    extra = [s for s in range(n_fields) if (s >= _SESSION_FIELDS or s == _SESSION_STATE) and _field(root, s)]
    model = _table_at(root, _MODEL)
    version = _field(root, _ORT_VERSION)
    if extra or model is None or not version:
        raise ArtifactError(f"ORT-format model with a root layout edgeq does not know (fields {extra}, "
                            f"model {'present' if model else 'missing'}, version {'present' if version else 'missing'})")
    resolver = _table_at(root, _RESOLVER)
    version_pos = root.Indirect(version + root.Pos)
    tail_start = min(model.Pos, _vtable_pos(buf, model.Pos), version_pos)
    if (resolver is not None and resolver.Pos >= tail_start) or root.Pos >= tail_start:
        raise ArtifactError("ORT-format model: the resolver or root table is not before the Model (unknown layout)")
    return SessionLayout(version_pos, model.Pos, tail_start, None if resolver is None else _read_resolver(resolver))


def _vector_of(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return int(builder.EndVector())


def _write_entry(builder: flatbuffers.Builder, entry: KernelTypeStrArgs) -> int:
    args = []
    for arg_type, index in entry.args:
        builder.StartObject(2)
        builder.PrependUint32Slot(1, index, 0)
        builder.PrependUint8Slot(0, arg_type, 0)
        args.append(builder.EndObject())
    args_vec = _vector_of(builder, args)
    key = builder.CreateSharedString(entry.kernel_type_str)  # "T", "T1", ...: shared, as ORT does
    builder.StartObject(2)
    builder.PrependUOffsetTRelativeSlot(1, args_vec, 0)
    builder.PrependUOffsetTRelativeSlot(0, key, 0)
    return int(builder.EndObject())


def _write_resolver(builder: flatbuffers.Builder, ops: tuple[OpKernelTypeStrs, ...]) -> int:
    op_offsets = []
    for op in ops:  # kept in ORT's stored order: sorted by key, which its reader may rely on
        entries = _vector_of(builder, [_write_entry(builder, e) for e in op.kernel_type_str_args])
        op_id = builder.CreateString(op.op_id)
        builder.StartObject(2)
        builder.PrependUOffsetTRelativeSlot(1, entries, 0)
        builder.PrependUOffsetTRelativeSlot(0, op_id, 0)
        op_offsets.append(builder.EndObject())
    ops_vec = _vector_of(builder, op_offsets)
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, ops_vec, 0)
    return int(builder.EndObject())


def canonical_bytes(buf: bytes) -> bytes:
    """``buf`` with the root table and kernel type string resolver rebuilt deterministically (same content)."""
    try:
        layout = read_session(buf)
        builder = flatbuffers.Builder(0)
        # Seed the builder with the deterministic tail; offsets "from the end" stay those of the original buffer.
        builder.Bytes, builder.head, builder.minalign = bytearray(buf[layout.tail_start:]), 0, _MAX_SCALAR_ALIGN
        resolver = None if layout.resolver is None else _write_resolver(builder, layout.resolver)
        builder.StartObject(_SESSION_FIELDS)
        if resolver is not None:
            builder.PrependUOffsetTRelativeSlot(_RESOLVER, resolver, 0)
        builder.PrependUOffsetTRelativeSlot(_MODEL, len(buf) - layout.model_pos, 0)
        builder.PrependUOffsetTRelativeSlot(_ORT_VERSION, len(buf) - layout.ort_version_pos, 0)
        builder.Finish(builder.EndObject(), file_identifier=FILE_IDENTIFIER)
        out = bytes(builder.Output())
        again = read_session(out)
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, RuntimeError) as e:  # RuntimeError: builder errors
        raise ArtifactError(f"could not rewrite the ORT-format model into canonical bytes: {e!r}") from e
    if again.resolver != layout.resolver or out[again.tail_start:] != buf[layout.tail_start:]:
        raise ArtifactError("canonical ORT-format rewrite changed the model's content (refusing to ship it)")
    return out


def canonicalize_ort_file(path: Path) -> None:
    """Rewrite ``path`` in place into canonical bytes; the file is replaced whole or left as it was."""
    out = canonical_bytes(path.read_bytes())
    scratch = path.with_name(path.name + ".canonical")
    scratch.write_bytes(out)
    os.replace(scratch, path)
