"""Fleet wall time: `edgeq validate --on fleet:...` on 1 board, on 5 boards in parallel (--jobs 5), on 5 boards in
parallel of which one is killed mid-run (its sshd, listener and session, dies when its first artifact starts: the
issue's "five boards, one killed mid-run"), and on the same 5 healthy boards one at a time (--jobs 1, what
`--validate-on ssh://a,ssh://b,...` did before fleets).

Five real sshd servers on 127.0.0.1 (tests/sshd.py), each board's python3 being this Python with onnxruntime, one
digits CNN export (fp32 + INT8 ONNX). Prints the median wall time of ``ROUNDS`` runs of each, their ratio, and the
host's load average and core count. All five "boards" share this machine's cores, so the boards' own work (sshd,
python3, the onnxruntime import, the inference) competes for the same CPUs, which on real boards it would not. Each
line therefore also gives the machine's busy CPU seconds during the run (/proc/stat, every process) and the floor
they set, busy / cores: a parallel run at its floor could only be faster with more cores, i.e. with real boards.

    sudo python -m bench.fleet [--rounds N] [--export OUTDIR]     (needs openssh-server; runs sshd as root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from edgeq.commands.validate import validate
from edgeq.config import FleetOptions
from tests.sshd import Sshd, device_shell, keygen

BOARDS = 5


def _shelf(root: Path) -> tuple[list[Sshd], Path]:
    """Boards b1..b5 (group "shelf", healthy) and b6 (killed mid-run); group "drop" is b1..b4 + b6."""
    shell = device_shell(root)
    pub = keygen(root / "client")
    servers, fleet = [], []
    for i in range(1, BOARDS + 2):
        d = root / f"b{i}"
        (d / "work").mkdir(parents=True)
        kind = "killed" if i == BOARDS + 1 else "ok"
        s = Sshd(d, f'command="{shell} {kind}",no-port-forwarding,no-pty {pub}\n').start()
        servers.append(s)
        groups = ["drop"] if kind == "killed" else ["shelf", "drop"] if i < BOARDS else ["shelf"]
        fleet.append(f'[boards.b{i}]\nssh = "root@127.0.0.1:{s.port}{d / "work"}"\ntarget = "x86-64"\n'
                     f'groups = {groups!r}\n'.replace("'", '"'))
    (root / "known_hosts").write_text("".join(s.known_hosts_line for s in servers))
    (root / "edgeq-fleet.toml").write_text("\n".join(fleet))
    os.environ.update(EDGEQ_SSH_IDENTITY=str(root / "client"), EDGEQ_SSH_KNOWN_HOSTS=str(root / "known_hosts"),
                      EDGEQ_SSH_REPEATS="5")
    return servers, root / "edgeq-fleet.toml"


def _export(root: Path) -> Path:
    import edgeq
    from edgeq.zoo.digits import write_digits_data

    calib, ev = write_digits_data(root / "data")
    out = root / "digits"
    edgeq.export("edgeq.zoo.digits:digits_cnn", calib=str(calib), eval=str(ev), output=out)
    return out


def _busy_cpu() -> float:
    """CPU seconds spent by every process of this machine since boot (user + nice + system + irq + softirq)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _timed(outdir: Path, selector: str, fleet: Path, jobs: int,
           want: tuple[int, int] | None = None) -> tuple[float, float]:
    """Wall seconds and the machine's busy CPU seconds of one validate run. ``want``: (passed, unreachable) boards
    expected; default: the run passes."""
    c0, t0 = _busy_cpu(), time.perf_counter()
    res = validate(outdir, (selector,), fleet=FleetOptions(file=str(fleet), jobs=jobs))
    dt, cpu = time.perf_counter() - t0, _busy_cpu() - c0
    counts = res.manifest["verdict"].get("fleet") or {}
    if want is None and not res.passed:
        raise SystemExit(f"{selector}: the run did not pass: {res.manifest['verdict']}")
    if want is not None and (counts.get("passed"), counts.get("unreachable")) != want:
        raise SystemExit(f"{selector}: expected {want[0]} passed and {want[1]} unreachable, got {counts}")
    return dt, cpu


def _dropped(outdir: Path, fleet: Path, killed: Sshd) -> tuple[float, float]:
    """5 boards with --jobs 5, one of which dies mid-run; its sshd is started again for the next round."""
    dt = _timed(outdir, "fleet:drop", fleet, BOARDS, want=(BOARDS - 1, 1))
    killed.stop()
    killed.start()
    return dt


def _line(label: str, runs: list[tuple[float, float]]) -> str:
    wall, cpu = [w for w, _ in runs], statistics.median(c for _, c in runs)
    return (f"{label}: median {statistics.median(wall):.2f} s of {len(wall)} ({', '.join(f'{t:.2f}' for t in wall)});"
            f" busy CPU {cpu:.2f} s, floor on {os.cpu_count()} cores {cpu / (os.cpu_count() or 1):.2f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--export", type=Path, help="an existing x86-64 export folder (default: export the digits CNN)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="edgeq-bench-fleet-"))
    root.chmod(0o755)
    servers: list[Sshd] = []
    try:
        servers, fleet = _shelf(root)
        out = root / "run"
        shutil.copytree(args.export or _export(root), out)
        load_before = os.getloadavg()
        one: list[tuple[float, float]] = []
        five: list[tuple[float, float]] = []
        drop: list[tuple[float, float]] = []
        seq: list[tuple[float, float]] = []
        for _ in range(args.rounds):  # interleaved, so a change in the host's load hits all alike
            one.append(_timed(out, "fleet:b1", fleet, 1))
            five.append(_timed(out, "fleet:shelf", fleet, BOARDS))
            drop.append(_dropped(out, fleet, servers[-1]))
            seq.append(_timed(out, "fleet:shelf", fleet, 1))
        load_after = os.getloadavg()
        print(f"host: {os.cpu_count()} cores, load average (1/5/15 min) before {load_before[0]:.2f}/"
              f"{load_before[1]:.2f}/{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/"
              f"{load_after[2]:.2f}")
        print(_line("1 board", one))
        print(_line(f"{BOARDS} boards, --jobs {BOARDS}", five))
        print(_line(f"{BOARDS} boards, one killed mid-run, --jobs {BOARDS} ({BOARDS - 1} passed, 1 unreachable)", drop))
        print(_line(f"{BOARDS} boards, --jobs 1", seq))
        m1 = statistics.median(w for w, _ in one)
        ratio = {k: statistics.median(w for w, _ in v) / m1 for k, v in (("five", five), ("drop", drop), ("seq", seq))}
        print(f"ratio to 1 board: {ratio['five']:.2f}x with --jobs {BOARDS}, {ratio['drop']:.2f}x with one board "
              f"killed, {ratio['seq']:.2f}x with --jobs 1")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
