"""Work folders a dropped SSH run left on a device, removed on the next connection to that device.

When a board disappears mid-run, the ``rm -rf`` of the run's folder cannot reach it. Each folder the ssh runner
makes is therefore noted locally (``~/.cache/edgeq/ssh-leftovers/<device>.json``, with the pid of the edgeq
process that made it) and forgotten once removed; the next connection to the device removes the folders that a
dead process, or an earlier run of this process, left. Folders of another live edgeq process are never touched,
and only paths shaped like the runner's own ``WORKDIR/edgeq-run.XXXXXX`` are ever removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from edgeq.cache import cache_dir
from edgeq.procs import pid_alive

_RUN_DIR = re.compile(r"^/(?:[A-Za-z0-9._+-]+/)*edgeq-run\.[A-Za-z0-9]{6,}$")
_LIVE: set[tuple[str, str]] = set()  # (device, folder) in use by this process right now
_LOCK = threading.Lock()


def _file(device: str) -> Path:
    return cache_dir("ssh-leftovers") / (re.sub(r"[^A-Za-z0-9._-]+", "_", device) + ".json")


@contextlib.contextmanager
def _records(device: str) -> Iterator[list[dict[str, object]]]:
    """The device's records, locked against other edgeq processes, written back on exit."""
    f = _file(device)
    with _LOCK, open(f, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        try:
            recs = [r for r in json.loads(fh.read() or "[]") if isinstance(r, dict)]
        except json.JSONDecodeError:
            recs = []
        yield recs
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(recs))


def remember(device: str, folder: str) -> None:
    _LIVE.add((device, folder))  # first: a concurrent stale() must never see it as left over
    with _records(device) as recs:
        recs.append({"dir": folder, "pid": os.getpid()})


def forget(device: str, folder: str, removed: bool) -> None:
    """The run using ``folder`` is over; drop its record only when the folder is really gone from the device."""
    _LIVE.discard((device, folder))
    if removed:
        with _records(device) as recs:
            recs[:] = [r for r in recs if r.get("dir") != folder]


def stale(device: str) -> list[str]:
    """Folders left on ``device`` by a run that is over (its process is gone, or it is this one's and done)."""
    with _records(device) as recs:
        out = []
        for r in recs:
            d, pid = r.get("dir"), r.get("pid")
            if not isinstance(d, str) or not _RUN_DIR.match(d) or (device, d) in _LIVE:
                continue
            if pid == os.getpid() or not (isinstance(pid, int) and pid_alive(pid)):
                out.append(d)
        return out
