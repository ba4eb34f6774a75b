"""examples/github-actions.yml is a valid workflow (GitHub's JSON schema, vendored by check-jsonschema) whose
edgeq commands parse with edgeq's own argument parser."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgeq.cli import parse_args

WORKFLOW = Path(__file__).resolve().parent.parent / "examples" / "github-actions.yml"


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is in the test extra: pip install -e '.[test]'")
    exe = shutil.which("check-jsonschema", path=os.path.dirname(sys.executable)) or "check-jsonschema"
    return subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_workflow_matches_the_github_schema() -> None:
    r = _schema_check(WORKFLOW)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_broken_workflow_is_caught(tmp_path: Path) -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    del wf["jobs"]["int8-gate"]["runs-on"]
    wf["jobs"]["int8-gate"]["timeout-minutes"] = "an hour"
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(wf))
    assert _schema_check(bad).returncode != 0


def test_workflow_caches_the_emulator_and_uploads_report_and_junit() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = wf["jobs"]["int8-gate"]["steps"]
    cache = next(s for s in steps if str(s.get("uses", "")).startswith("actions/cache@"))
    assert "~/.cache/edgeq/emulator" in cache["with"]["path"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert "out/report.html" in upload["with"]["path"] and "edgeq-junit.xml" in upload["with"]["path"]


def test_every_edgeq_command_in_the_workflow_parses() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    env = {k: str(v) for k, v in wf.get("env", {}).items()}
    commands = []
    for step in wf["jobs"]["int8-gate"]["steps"]:
        for line in str(step.get("run", "")).splitlines():
            words = shlex.split(line)
            if words and words[0] == "edgeq":
                words = words[1:words.index(">")] if ">" in words else words[1:]
                commands.append([w.replace("$MODEL", env["MODEL"]).replace("$TARGET", env["TARGET"]) for w in words])
    assert {c[0] for c in commands} >= {"emulator", "export", "check"}
    for argv in commands:
        if "--config" in argv:  # the user's file; parse the flags without it
            i = argv.index("--config")
            argv = argv[:i] + argv[i + 2:] + ["--calib", "calib.npz"]
        parse_args(argv)  # raises SystemExit on an unknown flag
