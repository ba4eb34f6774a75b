"""Fault: an SSH board that drops mid-validation. Five real sshd boards validate in parallel; board ``b5`` kills its
own sshd (listener and session) when its first artifact starts. Expect a typed runner outcome naming the board,
exit 3 under ``--min-boards 5``, the four other boards' rows kept, and nothing left in the dropped board's working
directory after the next connection to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import listing
from tests.shelf import Shelf, export_copy


def test_five_boards_one_killed_mid_run(ssh_env: Shelf, digits_export, tmp_path: Path,  # type: ignore[no-untyped-def]
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """4 passed + 1 unreachable in the verdict, the manifest, the reports and --json; exit 3 under --min-boards 5;
    the killed board's folder is removed on the next connection to it."""
    from edgeq.cli import main
    from edgeq.validate.runners.ssh import SshRunner

    out = export_copy(digits_export, tmp_path)
    capsys.readouterr()
    rc = main(["-q", "--json", "validate", str(out), "--on", "host,fleet:shelf", "--fleet", str(ssh_env.fleet_file),
               "--jobs", "5", "--min-boards", "5"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 3
    want = {"boards": 5, "passed": 4, "failed": 0, "unreachable": 1, "error": 0, "answered": 4, "min_boards": 5,
            "quorum_met": False}
    m = json.loads((out / "edgeq.json").read_text())
    assert m["verdict"]["fleet"] == doc["fleet"] == want
    assert not doc["passed"] and not m["verdict"]["passed"] and doc["failures"] == []
    assert "4 of 5 board(s) answered" in doc["infra_failures"][0] and "b5: unreachable" in doc["infra_failures"][0]
    status = {b["name"]: b["status"] for b in m["fleet"]["boards"]}
    assert status == {"b1": "passed", "b2": "passed", "b3": "passed", "b4": "passed", "b5": "unreachable"}
    b5 = m["fleet"]["boards"][4]
    assert "connection to the device was lost" in b5["reason"] and b5["validations"] == 0
    for a in m["artifacts"]:  # one row per (artifact, answering board), plus the host; nothing from b5
        if a["validations"]:
            assert sorted(v.get("board") or v["runner"] for v in a["validations"]) == ["b1", "b2", "b3", "b4", "host"]
    assert m["config"]["validate_on"][-1] == "fleet:shelf"
    md = (out / "report.md").read_text()
    assert "## Boards" in md and "| b5 |" in md and "UNREACHABLE" in md and "b1 (ssh://root@127.0.0.1:" in md
    html = (out / "report.html").read_text()
    assert "<h2>Boards</h2>" in html and html.count("<td>pass</td>") == 4 and "<td>UNREACHABLE</td>" in html
    # The dropped run's folder is still on b5; the next connection to the board removes it.
    killed = ssh_env.boards[4]
    assert [p.name.startswith("edgeq-run.") for p in killed.work.iterdir()] == [True]
    killed.sshd.stop()
    killed.sshd.set_authorized_keys(ssh_env.ok_keys)
    killed.sshd.start()
    SshRunner(None, f"ssh://{killed.addr}").probe()
    assert listing(killed.work) == [] and all(listing(b.work) == [] for b in ssh_env.boards)
