"""Exit codes mean one thing each: 1 is only "budget exceeded"; an internal error is 3 with a log file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

CRASH = """
import sys
import edgeq.commands.inspect as cmd
def boom(args):
    return {}["no such key"]  # a bug inside edgeq, not bad input
cmd.run = boom
from edgeq.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_internal_error_exits_3_with_one_line_and_a_log(tmp_path: Path, verbose: bool) -> None:
    args = (["-v"] if verbose else []) + ["inspect", "whatever.onnx"]
    r = subprocess.run([sys.executable, "-c", CRASH, *args], capture_output=True, text=True, timeout=120,
                       env={"EDGEQ_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
                            **{k: v for k, v in __import__("os").environ.items() if k == "PYTHONPATH"}})
    assert r.returncode == 3, r.stderr
    assert "edgeq: internal error: KeyError: 'no such key'" in r.stderr
    log = Path(re.search(r"the traceback is in (\S+);", r.stderr).group(1))  # type: ignore[union-attr]
    assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text() and "boom" in log.read_text()
    assert ("Traceback" in r.stderr) == verbose
