"""Terminal conventions: third-party warnings and log records go to a log file (and to stderr with ``-v``),
``--json`` results go to stdout alone, human summaries to stdout (or stderr under ``--json``)."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TextIO

from edgeq.cache import cache_dir
from edgeq.procs import pid_alive

LOG_NAME = "last-run.log"


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def log_path() -> Path:
    return cache_dir("logs") / LOG_NAME


def _run_log(final: Path) -> Path:
    """This run's own log file; two runs sharing the user cache never write into one file. It becomes
    ``last-run.log`` by an atomic rename when the run ends. Files of runs that died (SIGKILL) are removed."""
    for p in final.parent.glob("run-*.log"):
        pid = p.stem.removeprefix("run-")
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                p.unlink()
    return final.with_name(f"run-{os.getpid()}.log")


def _publish(run_log: Path, final: Path, handler: logging.Handler) -> None:
    handler.close()
    with contextlib.suppress(OSError):
        os.replace(run_log, final)


def configure_output(args: argparse.Namespace) -> None:
    """Capture warnings (torch.export, onnxruntime.quantization, ...) in the log; show them only with ``-v``."""
    verbose = int(getattr(args, "verbose", 0) or 0)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_edgeq", False):
            root.removeHandler(h)
    path = log_path()
    run_log = _run_log(path)
    file_handler = logging.FileHandler(run_log, mode="w", encoding="utf-8")
    atexit.register(_publish, run_log, path, file_handler)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    counter = _Counter()
    handlers: list[logging.Handler] = [file_handler, counter]
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.INFO if verbose > 1 else logging.WARNING)
        stream.setFormatter(logging.Formatter("edgeq: %(levelname)s %(name)s: %(message)s"))
        handlers.append(stream)
    for h in handlers:
        h._edgeq = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    if not verbose and not getattr(args, "quiet", False):
        atexit.register(_say_where, counter, path)


def _say_where(counter: _Counter, path: Path) -> None:
    if counter.count:
        print(f"edgeq: {counter.count} warning(s) from the libraries were written to {path} (-v shows them)",
              file=sys.stderr)


def human(args: argparse.Namespace) -> TextIO:
    """Where human-readable summaries go: stdout, or stderr when stdout carries the ``--json`` result."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def emit_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str), file=sys.stdout, flush=True)
