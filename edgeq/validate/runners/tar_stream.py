"""The tar streams an ssh session sends to a board (the files of a run) and reads back (its results), in memory."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from edgeq.errors import DeviceError


def tar_members(stream: bytes, names: list[str], where: str) -> dict[str, bytes]:
    """The named regular files of the tar stream a run sent back, read in one pass, in memory (nothing is extracted
    to disk); a missing one is a DeviceError."""
    out: dict[str, bytes] = {}
    name = names[0]
    try:
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tf:
            for name in names:
                info = tf.getmember(name)
                f = tf.extractfile(info) if info.isreg() else None
                if f is None:
                    raise KeyError(name)
                out[name] = f.read()
    except (tarfile.TarError, KeyError) as e:
        raise DeviceError(f"{where}: the run sent back no {name} ({e})",
                          "the device's tar or the runner misbehaved; re-run, or check the board") from e
    return out


def tar_of(files: dict[str, Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for arcname, path in files.items():
            t.add(str(path), arcname=arcname, recursive=False)
    return buf.getvalue()
