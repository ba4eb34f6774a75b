"""A real OpenSSH server on 127.0.0.1 for the ssh runner tests (test_ssh.py, test_fleet.py).

One ``Sshd`` = one folder with a generated host key, an ``sshd_config`` on a free port and an ``authorized_keys``
whose forced commands pick the device's personality; ``start``/``stop``/``kill`` run and end the server by pid.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def require_sshd() -> None:
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd test runs sshd as root (CI runs as root)")
    if not (Path(SSHD).is_file() and shutil.which("ssh") and shutil.which("ssh-keygen")):
        pytest.skip("openssh-server/client not installed (scripts/system-deps.sh installs them)")


def dropping_python(python: str) -> str:
    """A board's ``python3`` that loses power when the real run starts (``run_onnx.py``; the probe runs normally):
    it kills -9, by pid, every process from the listening sshd down to itself -- the server, the session and the
    shells, itself last -- so the run's connection drops, nothing on the board cleans up after it, and no new
    connection gets in."""
    return ("#!/bin/sh\ncase \"$1\" in run_onnx.py)\n  p=$$; pids=\"\"\n  while [ \"$p\" -gt 1 ]; do\n"
            "    pids=\"$p $pids\"; up=$(awk '{print $4}' /proc/$p/stat)\n"
            "    [ \"$(cat /proc/$p/comm)\" = sshd ] && [ \"$(cat /proc/$up/comm)\" != sshd ] && break\n"
            "    p=$up\n  done\n  kill -9 $pids; exit 1;;\nesac\n"
            f"exec {python} \"$@\"\n")


def device_shell(root: Path) -> Path:
    """The boards' forced command (authorized_keys ``command="device-shell ok|killed"``): puts that kind of board's
    ``python3`` first on PATH -- the host's Python (``ok``) or one that loses power mid-run (``killed``) -- and runs
    the client's command."""
    bins = {"ok": f"#!/bin/sh\nexec {sys.executable} \"$@\"\n", "killed": dropping_python(sys.executable)}
    for kind, text in bins.items():
        (root / f"bin-{kind}").mkdir()
        (root / f"bin-{kind}" / "python3").write_text(text)
        (root / f"bin-{kind}" / "python3").chmod(0o755)
    shell = root / "device-shell"
    shell.write_text("#!/bin/sh\ncase \"$1\" in\n" + "".join(f"  {k}) PATH={root}/bin-{k}:/usr/bin:/bin;;\n" for k in bins)
                     + "esac\nexport PATH\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n")
    shell.chmod(0o755)
    return shell


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return (path.with_suffix(".pub") if path.suffix else Path(f"{path}.pub")).read_text().strip()


class Sshd:
    def __init__(self, root: Path, authorized_keys: str) -> None:
        self.root = root
        self.port = free_port()
        host_pub = keygen(root / "host_key")
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {' '.join(host_pub.split()[:2])}\n"
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(self.known_hosts_line)
        self.set_authorized_keys(authorized_keys)
        (root / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
            "UsePAM no\nStrictModes no\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nMaxStartups 50\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def set_authorized_keys(self, text: str) -> None:
        (self.root / "authorized_keys").write_text(text)  # read by sshd on every connection

    def spec(self, workdir: str = "/tmp") -> str:
        return f"ssh://root@127.0.0.1:{self.port}{workdir}"

    def start(self) -> Sshd:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder (Debian creates it at boot)
        with open(self.root / "sshd.log", "a") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")], stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
                time.sleep(0.1)
        pytest.fail(f"sshd on port {self.port} did not start in 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
