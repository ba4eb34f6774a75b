"""Five real ``sshd`` boards on 127.0.0.1 for the fleet tests (tests/test_fleet.py) and the board-drop fault
(tests/faults/test_board_drop.py). Each board's python3 is the host's Python with onnxruntime (real SSH, real
runtime). Board ``b5`` loses power when its first artifact starts running (tests.sshd.dropping_python):
the board is gone mid-run, as when a Pi loses power. The fixtures ``shelf`` and ``ssh_env`` are re-exported by tests/conftest.py.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sshd import Sshd, device_shell, keygen, require_sshd


@dataclass
class Board:
    name: str
    sshd: Sshd
    work: Path

    @property
    def addr(self) -> str:
        return f"root@127.0.0.1:{self.sshd.port}{self.work}"


@dataclass
class Shelf:
    boards: list[Board]
    fleet_file: Path
    key: Path
    known_hosts: Path
    ok_keys: str  # authorized_keys line of a healthy board


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    require_sshd()
    root = tmp_path_factory.mktemp("shelf")
    root.chmod(0o755)
    shell = device_shell(root)
    key = root / "client"
    pub = keygen(key)
    line = {n: f'command="{shell} {n}",no-port-forwarding,no-pty {pub}\n' for n in ("ok", "killed")}
    boards = []
    for i in range(1, 6):
        d = root / f"b{i}"
        d.mkdir()
        (d / "work").mkdir()
        boards.append(Board(f"b{i}", Sshd(d, line["killed" if i == 5 else "ok"]).start(), d / "work"))
    kh = root / "known_hosts"
    kh.write_text("".join(b.sshd.known_hosts_line for b in boards))
    fleet = root / "edgeq-fleet.toml"
    fleet.write_text("".join(f'[boards.{b.name}]\nssh = "{b.addr}"\ntarget = "x86-64"\ngroups = ["shelf"]\n\n'
                             for b in boards))
    yield Shelf(boards, fleet, key, kh, line["ok"])
    for b in boards:
        b.sshd.stop()


@pytest.fixture
def ssh_env(shelf: Shelf, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Shelf:
    monkeypatch.setenv("EDGEQ_SSH_IDENTITY", str(shelf.key))
    monkeypatch.setenv("EDGEQ_SSH_KNOWN_HOSTS", str(shelf.known_hosts))
    monkeypatch.setenv("EDGEQ_SSH_REPEATS", "1")
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))  # the leftover records of this test only
    return shelf


def export_copy(digits_export, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / "digits"
    shutil.copytree(digits_export.output, out)
    return out
