"""Two exports and a cache writer at once against one user cache (EDGEQ_CACHE_DIR): both exports finish, and
nothing in the cache is ever seen half-written (atomic renames; per-run log files renamed to last-run.log)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import TINY

# Rewrites the demo data in the cache (what `edgeq demo` does) and re-reads it, until STOP exists; prints the
# number of reads that saw a broken file.
CHURN = """
import sys, zipfile
from pathlib import Path
import numpy as np
from edgeq.cache import cache_dir
from edgeq.zoo.digits import write_digits_data
stop, bad, n = Path(sys.argv[1]), 0, 0
folder = cache_dir("data")
write_digits_data(folder)
while not stop.exists():
    write_digits_data(folder)
    for f in ("digits_calib.npz", "digits_eval.npz"):
        n += 1
        try:
            with np.load(folder / f) as z:
                assert z["image"].shape[1:] == (1, 8, 8)
        except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError, AssertionError):
            bad += 1
print(n, bad)
"""
READER = CHURN.replace("write_digits_data(folder)\n    for", "for")  # a pure reader of the same files


@pytest.mark.slow  # two exports of the tiny CNN at once: ~20 s idle
def test_two_exports_and_a_cache_writer_share_the_user_cache(tmp_path: Path, tiny_calib: Path) -> None:
    cache = tmp_path / "cache"
    env = dict(os.environ, EDGEQ_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    shutil.copy(tiny_calib, tmp_path / "calib.npz")
    stop = tmp_path / "stop"
    churn = [subprocess.Popen([sys.executable, "-c", code, str(stop)], env=env, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for code in (CHURN, READER)]
    exports = [subprocess.Popen([sys.executable, "-m", "edgeq.cli", "export", TINY, "--calib", "calib.npz",
                                 "-o", out, "--no-search"], env=env, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for out in ("a", "b")]
    try:
        results = [p.communicate(timeout=900) for p in exports]
    finally:
        stop.write_text("")
        counts = [p.communicate(timeout=120)[0].split() for p in churn]
    for p, (_, err) in zip(exports, results, strict=True):
        assert p.returncode in (0, 1), err[-2000:]
    for reads, bad in counts:
        assert int(reads) > 0 and int(bad) == 0, counts
    logs = sorted(p.name for p in (cache / "logs").iterdir())
    assert logs == ["last-run.log"], logs  # each run's own log, renamed into place; none left behind
    for out in ("a", "b"):
        r = subprocess.run([sys.executable, "-m", "edgeq.cli", "check", out], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
