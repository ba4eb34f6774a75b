"""The output folder's life cycle: prepare (lock, leftovers, --force rules), commit, discard; signals; scratch.

An export builds into a temporary sibling ``.NAME.edgeq-tmp-PID-XXXX`` of OUTDIR and renames it into place at the
end, so a failure, Ctrl-C or SIGTERM never leaves a partial OUTDIR. While it runs it holds an exclusive
``flock`` on ``.NAME.edgeq-lock``: a second export into the same OUTDIR fails at once instead of overwriting the
first. A run killed with SIGKILL cannot clean up; its leftovers are removed by the next run that takes the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import IO

from edgeq.errors import OutputExistsError
from edgeq.manifest import MANIFEST_NAME
from edgeq.procs import pid_alive

TMP_MARK = ".edgeq-tmp-"
OLD_MARK = ".edgeq-old-"
SCRATCH_PREFIX = "edgeq-scratch-"
MANIFEST_SCHEMA = "edgeq.manifest"

# Test hook: when EDGEQ_TEST_PAUSE_AT is a substring of a progress stage, the run prints PAUSE_MARKER on stderr
# and waits (bounded) for a signal, so a test can interrupt at a known point without racing the pipeline.
PAUSE_ENV = "EDGEQ_TEST_PAUSE_AT"
PAUSE_MARKER = "edgeq-test: paused at"
PAUSE_MAX_SECONDS = 300.0


# Where every export keeps its validation data, relative to OUTDIR (the export, the SELECT phase and check agree).
VALIDATION_DIR = "validation"
INPUTS_REL = f"{VALIDATION_DIR}/inputs.npz"
REFERENCE_REL = f"{VALIDATION_DIR}/reference.npz"

_locks: dict[Path, IO[str]] = {}


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an exception so the same cleanup as Ctrl-C runs; the CLI exits 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Make SIGTERM (what CI runners and ``timeout`` send) unwind like Ctrl-C. Main thread only."""
    with contextlib.suppress(ValueError):  # not the main thread (e.g. called from a worker): leave defaults
        signal.signal(signal.SIGTERM, _raise_terminated)


def checkpoint(stage: str) -> None:
    """The test hook described at PAUSE_ENV; a no-op unless the variable is set."""
    want = os.environ.get(PAUSE_ENV)
    if not want or want not in stage:
        return
    print(f"{PAUSE_MARKER} {stage}", file=sys.stderr, flush=True)
    end = time.monotonic() + PAUSE_MAX_SECONDS
    while time.monotonic() < end:
        time.sleep(0.05)  # a signal handler (SIGINT, SIGTERM) raises out of this sleep


def _owner_pid(name: str, mark: str) -> int | None:
    tail = name.split(mark, 1)[1] if mark in name else ""
    head, sep, _ = tail.partition("-")
    return int(head) if sep and head.isdigit() else None  # only names we made: MARK + PID + "-" + random


def cleanup_scratch() -> list[Path]:
    """Remove ``edgeq-scratch-PID-*`` folders of processes that no longer run (a killed run's leftovers)."""
    removed = []
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for p in base.glob(f"{SCRATCH_PREFIX}*"):
            pid = _owner_pid(p.name, SCRATCH_PREFIX)
            if pid is not None and pid != os.getpid() and not pid_alive(pid) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def make_scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))


def is_edgeq_output(folder: Path) -> bool:
    """True when ``folder`` holds an edgeq manifest (the only kind of folder --force may replace)."""
    p = folder / MANIFEST_NAME
    if p.is_symlink() or not p.is_file():
        return False
    try:
        with p.open("rb") as f:
            head = f.read(1 << 20)
        return bool(json.loads(head.decode("utf-8")).get("schema") == MANIFEST_SCHEMA)
    except (OSError, ValueError, AttributeError):
        return False


def _lock_path(output: Path) -> Path:
    return output.parent / f".{output.name}.edgeq-lock"


def _acquire_lock(output: Path) -> None:
    path = _lock_path(output)
    while True:
        f = path.open("a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise OutputExistsError(f"another edgeq run (pid {holder}) is writing {output}",
                                    "wait for it to finish, or pick another -o") from None
        # The previous holder may have unlinked the file between our open and our flock: retry on the new one.
        try:
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            _locks[output] = f
            return
        f.close()


def _release_lock(output: Path) -> None:
    f = _locks.pop(output, None)
    if f is not None:
        with contextlib.suppress(OSError):
            _lock_path(output).unlink()
        f.close()


def _remove_leftovers(output: Path) -> None:
    """Temporary siblings of OUTDIR from runs that died; safe because we hold OUTDIR's lock."""
    for mark in (TMP_MARK, OLD_MARK):
        for p in output.parent.glob(f".{output.name}{mark}*"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


def prepare_output(output: Path, force: bool) -> Path:
    """Lock OUTDIR, apply the --force rules, clear leftovers; return a fresh temporary sibling to build into."""
    output = Path(os.path.abspath(output))
    if output.is_symlink():
        raise OutputExistsError(f"output {output} is a symbolic link", "pick a real folder for -o")
    if output.exists() and not output.is_dir():
        raise OutputExistsError(f"{output} exists and is not a folder", "pick another -o")
    if output.exists() and not force:
        raise OutputExistsError(f"output folder {output} already exists", "pass --force to replace it, or pick another -o")
    if output.exists() and any(output.iterdir()) and not is_edgeq_output(output):
        raise OutputExistsError(f"--force refuses to replace {output}: it holds no {MANIFEST_NAME}, so it is not "
                                "an edgeq output folder", "pick another -o, or empty/remove the folder yourself")
    output.parent.mkdir(parents=True, exist_ok=True)
    _acquire_lock(output)
    try:
        _remove_leftovers(output)
        return Path(tempfile.mkdtemp(prefix=f".{output.name}{TMP_MARK}{os.getpid()}-", dir=output.parent))
    except BaseException:
        _release_lock(output)
        raise


def commit_output(tmp: Path, output: Path) -> None:
    """Put ``tmp`` in place of ``output`` (two renames; the old folder is removed only afterwards); unlock."""
    output = Path(os.path.abspath(output))
    try:
        old = None
        if output.exists():
            old = output.parent / f".{output.name}{OLD_MARK}{os.getpid()}"
            os.rename(output, old)
        os.rename(tmp, output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        _release_lock(output)


def discard_output(tmp: Path, output: Path) -> None:
    """After a failure or an interrupt: remove the temporary folder and unlock; OUTDIR is untouched."""
    shutil.rmtree(tmp, ignore_errors=True)
    _release_lock(Path(os.path.abspath(output)))
