"""Fleets: a fleet file of named boards, selectors, boards validated in parallel, one row and one status per board.

End to end against five real ``sshd`` servers on 127.0.0.1 (tests/sshd.py, as in test_ssh.py). Each board's python3
is the host's Python with onnxruntime (real SSH, real runtime; the ARM kernels are test_ssh.py's subject). Board
``b5`` kills its own sshd — the listener and the session — when the first artifact starts running: the board is
gone mid-run, as when a Pi loses power. Nothing here asserts a duration (bench/fleet.py measures those).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgeq.config import FleetOptions
from edgeq.errors import DeviceUnreachableError, FleetError, UsageError
from edgeq.validate.fleet import load_fleet, parse_fleet, select_boards
from edgeq.validate.fleet_run import fleet_verdict
from edgeq.validate.orchestrate import exit_code
from tests.conftest import listing
from tests.shelf import Shelf, export_copy
from tests.sshd import free_port

# --- the fleet file and selectors (no network) -------------------------------------------------------------------


def _fleet(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "edgeq-fleet.toml"
    f.write_text(text)
    return f


GOOD = """
[boards.pi5-a]
ssh = "ci@10.0.0.5"
target = "raspberry-pi-5"
groups = ["shelf-1"]

[boards.pi5-b]
ssh = "ssh://ci@10.0.0.6:2222/home/ci/edgeq"
target = "raspberry-pi-5"

[boards.pi4-a]
ssh = "pi@10.0.0.7"
target = "raspberry-pi-4"
groups = ["shelf-1", "slow"]
"""


def test_selectors(tmp_path: Path) -> None:
    f = _fleet(tmp_path, GOOD)

    def names(*specs: str) -> list[str]:
        return [b.name for b in select_boards(specs, str(f))]

    assert names("fleet:raspberry-pi-5") == names("fleet:target=raspberry-pi-5") == ["pi5-a", "pi5-b"]
    assert names("fleet:shelf-1") == names("fleet:group=shelf-1") == ["pi5-a", "pi4-a"]
    assert names("fleet:pi4-a") == names("fleet:board=pi4-a") == ["pi4-a"]
    assert names("fleet:all") == ["pi5-a", "pi5-b", "pi4-a"]
    # a board selected twice (and once by its address) is validated once, under its fleet name
    assert names("fleet:shelf-1", "fleet:raspberry-pi-5", "ssh://ci@10.0.0.5", "host") == ["pi5-a", "pi4-a", "pi5-b"]
    b = load_fleet(f).boards[1]
    assert (b.runner, b.spec) == ("ssh://ci@10.0.0.6:2222", "ssh://ci@10.0.0.6:2222/home/ci/edgeq")
    for bad, match in (("fleet:nope", "no board, group or target profile"), ("fleet:x86-64", "matches no board"),
                       ("fleet:kind=x", "bad fleet selector"), ("fleet:group=", "bad fleet selector")):
        with pytest.raises(FleetError, match=match):
            select_boards((bad,), str(f))


@pytest.mark.parametrize(("text", "match"), [
    (GOOD + '\n[boards.pi5-a]\nssh = "x@y"\ntarget = "x86-64"\n', "duplicate board"),
    (GOOD + '\n[boards.again]\nssh = "ci@10.0.0.5:22/other"\ntarget = "x86-64"\n', "duplicate board: ssh://ci@10.0.0.5"),
    ('[boards.p]\nssh = "ci@10.0.0.5"\ntarget = "raspberry-pi-6"\n', "unknown target profile 'raspberry-pi-6'"),
    ('[boards.p]\nssh = "ci@10.0.0.5:99999"\ntarget = "x86-64"\n', "bad ssh spec"),
    ('[boards.p]\nssh = "ci@"\ntarget = "x86-64"\n', "bad ssh spec"),
    ('[boards.p]\ntarget = "x86-64"\n', "'ssh' must be a string"),
    ('[boards.p]\nssh = "h"\ntarget = "x86-64"\nport = 22\n', "unknown key"),
    ('[boards.x86-64]\nssh = "h"\ntarget = "x86-64"\n', "bad board name"),
    ('[boards.p]\nssh = "h"\ntarget = "x86-64"\ngroups = ["p"]\n', "group 'p' is also a board"),
    ('[boards.p]\nssh = "h"\ntarget = "x86-64"\ngroups = ["raspberry-pi-4"]\n', "also a board or profile"),
    ("[board.p]\n", "expected only"),
    ("[boards.p\n", "not valid TOML"),
])
def test_fleet_file_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(FleetError, match=match) as e:
        load_fleet(_fleet(tmp_path, text))
    assert e.value.hint and e.value.exit_code == 2


def test_fleet_options_and_missing_file(tmp_path: Path) -> None:
    from edgeq.validate.fleet_run import split_runners

    with pytest.raises(FleetError, match="not found"):
        load_fleet(tmp_path / "none.toml")
    for bad in ({"jobs": 0}, {"min_boards": 0}, {"board_timeout": -1.0}):
        with pytest.raises(UsageError):
            FleetOptions(**bad)  # type: ignore[arg-type]
    f = str(_fleet(tmp_path, GOOD))
    with pytest.raises(FleetError, match="--min-boards 4 but only 3"):
        split_runners(("host", "fleet:all"), None, FleetOptions(file=f, min_boards=4))
    # one plain ssh:// board keeps the single-device behaviour; two make a fleet
    assert split_runners(("host", "ssh://a"), None, FleetOptions())[1] is None
    local, run = split_runners(("host", "ssh://a", "ssh://b"), None, FleetOptions())
    assert local == ("host",) and run is not None and run.min_boards == 2


def test_verdict_counts_and_exit_codes() -> None:
    def rec(*statuses: str, k: int) -> dict:  # type: ignore[type-arg]
        return {"min_boards": k, "boards": [{"name": f"b{i}", "status": s} for i, s in enumerate(statuses)]}

    summary, infra = fleet_verdict(rec("passed", "passed", "unreachable", "error", k=2))
    assert summary["answered"] == 2 and summary["quorum_met"] and not infra
    assert (summary["passed"], summary["unreachable"], summary["error"]) == (2, 1, 1)
    summary, infra = fleet_verdict(rec("passed", "unreachable", k=2))
    assert not summary["quorum_met"] and "1 of 2 board(s) answered" in infra[0] and "b1: unreachable" in infra[0]
    assert exit_code({"passed": True, "failures": []}) == 0
    assert exit_code({"passed": False, "failures": ["over budget"], "infra_failures": infra}) == 1
    assert exit_code({"passed": False, "failures": [], "infra_failures": infra}) == 3


# --- five real boards (tests/shelf.py); the board killed mid-run is tests/faults/test_board_drop.py ---------


def test_check_on_two_boards_junit(ssh_env: Shelf, digits_export, tmp_path: Path,  # type: ignore[no-untyped-def]
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`edgeq check --on fleet:board=...`: a JUnit case per board; the folder is not written."""
    from edgeq.cli import main

    out = export_copy(digits_export, tmp_path)
    before = {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()}
    junit = tmp_path / "junit.xml"
    capsys.readouterr()
    rc = main(["-q", "--json", "check", str(out), "--on", "fleet:b1,fleet:board=b2", "--fleet",
               str(ssh_env.fleet_file), "--junit", str(junit)])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert rc == 0, cap.err
    assert doc["fleet"]["passed"] == 2 and doc["fleet"]["quorum_met"]
    assert [b["name"] for b in doc["boards"]] == ["b1", "b2"]
    cases = [tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")]
    assert sum(c.startswith("board b") for c in cases) == 2 and not [tc for tc in ET.parse(junit).getroot().iter("error")]
    assert {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()} == before


def test_too_few_boards_reachable_fails_before_work(ssh_env: Shelf, digits_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A board that does not answer the probe: under --min-boards 2 of 2, exit 3 and the folder is untouched."""
    from edgeq.commands.validate import validate

    out = export_copy(digits_export, tmp_path)
    before = {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()}
    closed = f"ssh://root@127.0.0.1:{free_port()}"
    with pytest.raises(DeviceUnreachableError, match="only 1 of 2 board") as e:
        validate(out, (f"ssh://{ssh_env.boards[0].addr}", closed), fleet=FleetOptions(min_boards=2))
    assert e.value.exit_code == 3 and "unreachable" in e.value.cause
    assert {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()} == before


def test_parse_fleet_keeps_order() -> None:
    f = parse_fleet({"boards": {"z": {"ssh": "a@h1", "target": "x86-64"}, "a": {"ssh": "a@h2", "target": "x86-64"}}},
                    "inline")
    assert [b.name for b in f.boards] == ["z", "a"] and f.boards[0].runner == "ssh://a@h1"


@pytest.mark.slow  # a whole export (about 20 s on an idle machine; minutes on a loaded one)
def test_export_validates_on_boards(ssh_env: Shelf, digits_small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`edgeq export --validate-on host,fleet:...`: the boards validate the artifacts that ship, one row each."""
    from edgeq.cli import main

    calib, ev = digits_small
    out = tmp_path / "out"
    rc = main(["-q", "export", "edgeq.zoo.digits:digits_cnn", "--calib", str(calib), "--eval", str(ev),
               "--validate-on", "host,fleet:board=b1,fleet:b3", "--fleet", str(ssh_env.fleet_file), "--jobs", "2",
               "--no-search", "--outliers", "off", "-o", str(out)])
    m = json.loads((out / "edgeq.json").read_text())
    assert rc == 0 and m["verdict"]["passed"] and m["verdict"]["fleet"]["passed"] == 2
    assert [b["name"] for b in m["fleet"]["boards"]] == ["b1", "b3"] and m["fleet"]["jobs"] == 2
    assert m["config"]["validate_on"] == ["host", "fleet:board=b1", "fleet:b3"]
    assert "fleet" not in m["config"]["recorded"]  # how boards were driven does not change the artifacts' bytes
    int8 = next(a for a in m["artifacts"] if a["name"] == "onnx-int8-static")
    assert sorted(v.get("board") or v["runner"] for v in int8["validations"]) == ["b1", "b3", "host"]


def test_leftover_records(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only folders of finished runs are stale: a dead process's, or this process's once released; never another
    live process's, never a path not shaped like the runner's own work folder."""
    import os
    import subprocess

    from edgeq.validate.runners import ssh_leftovers as lo

    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path))
    p = subprocess.Popen(["true"])  # its pid is gone once it has been waited for
    p.wait()
    dev = "ssh://root@127.0.0.1:2222"
    lo._file(dev).write_text(json.dumps([
        {"dir": "/tmp/edgeq-run.aaaaaa", "pid": p.pid}, {"dir": "/tmp/edgeq-run.bbbbbb", "pid": os.getppid()},
        {"dir": "/etc", "pid": p.pid}, {"dir": "/tmp/x/edgeq-run.cccccc/../..", "pid": p.pid}]))
    assert lo.stale(dev) == ["/tmp/edgeq-run.aaaaaa"]
    lo.remember(dev, "/w/edgeq-run.dddddd")
    assert "/w/edgeq-run.dddddd" not in lo.stale(dev)  # in use by this process
    lo.forget(dev, "/w/edgeq-run.dddddd", removed=False)  # the rm could not reach the board
    assert "/w/edgeq-run.dddddd" in lo.stale(dev)
    lo.forget(dev, "/w/edgeq-run.dddddd", removed=True)
    assert lo.stale(dev) == ["/tmp/edgeq-run.aaaaaa"]


def test_junit_case_per_board(tmp_path: Path) -> None:
    from edgeq.report.junit import write_junit

    boards = [{"name": n, "runner": f"ssh://h{n}", "status": s, "reason": r, "validations": k}
              for n, s, r, k in (("a", "passed", "", 2), ("b", "failed", "", 2), ("c", "unreachable", "refused", 0),
                                 ("d", "error", "no onnxruntime", 0))]
    f = tmp_path / "j.xml"
    write_junit(f, [], "s", boards=boards)
    ts = ET.parse(f).getroot()
    assert (ts.get("tests"), ts.get("failures"), ts.get("errors")) == ("4", "1", "2")
    by = {tc.get("name"): tc for tc in ts.iter("testcase")}
    assert by["board b (ssh://hb)"].find("failure") is not None
    err = by["board c (ssh://hc)"].find("error")
    assert err is not None and "unreachable: refused" in (err.get("message") or "")
    assert by["board a (ssh://ha)"].find("error") is None and by["board a (ssh://ha)"].find("failure") is None


def test_board_runs_its_onnx_artifacts_in_one_connection(ssh_env: Shelf, digits_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A fleet board's share (``run_all``): one ssh connection and one onnxruntime import for all its ONNX
    artifacts, with the same outputs, in the same order, as one session per artifact."""
    import numpy as np

    from edgeq.targets import load_target
    from edgeq.validate.runners.ssh import SshRunner

    out = export_copy(digits_export, tmp_path)
    models = sorted(out.glob("*.onnx"))
    assert len(models) >= 2, models
    inputs = out / "validation" / "inputs.npz"
    board = ssh_env.boards[0]
    runner = SshRunner(load_target("x86-64"), f"ssh://{board.addr}")
    runner.probe()
    log = board.sshd.root / "sshd.log"
    accepted = log.read_text().count("Accepted publickey")
    together = runner.run_all([(m, "onnx") for m in models], inputs, tmp_path)
    assert log.read_text().count("Accepted publickey") == accepted + 1
    alone = [runner.run(m, "onnx", inputs, tmp_path) for m in models]
    assert log.read_text().count("Accepted publickey") == accepted + 1 + len(models)
    for a, b in zip(together, alone, strict=True):
        assert a.outputs.keys() == b.outputs.keys()
        assert all(np.array_equal(a.outputs[k], b.outputs[k]) for k in a.outputs)
        assert a.latency_ms is not None and a.latency_kind == "device"
    assert not list(board.work.iterdir())  # every session removed its folder
