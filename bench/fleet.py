"""Fleet wall time: `edgeq validate --on fleet:...` on 1 board, on 5 boards in parallel (--jobs 5), and on the
same 5 boards one at a time (--jobs 1, what `--validate-on ssh://a,ssh://b,...` did before fleets).

Five real sshd servers on 127.0.0.1 (tests/sshd.py), each board's python3 being this Python with onnxruntime, one
digits CNN export (fp32 + INT8 ONNX). Prints the median wall time of ``ROUNDS`` runs of each, their ratio, and the
host's load average and core count: all five "boards" share this machine's cores, so only the SSH, process start
and copy latency overlap; the inference itself competes for the same CPUs (on real boards it would not).

    sudo python -m bench.fleet [--rounds N] [--export OUTDIR]     (needs openssh-server; runs sshd as root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgeq.commands.validate import validate
from edgeq.config import FleetOptions
from tests.sshd import Sshd, keygen

BOARDS = 5


def _shelf(root: Path) -> tuple[list[Sshd], Path]:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    (bin_dir / "python3").chmod(0o755)
    shell = root / "device-shell"
    shell.write_text(f"#!/bin/sh\nexport PATH={bin_dir}:/usr/bin:/bin\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n")
    shell.chmod(0o755)
    pub = keygen(root / "client")
    servers, fleet = [], []
    for i in range(1, BOARDS + 1):
        d = root / f"b{i}"
        (d / "work").mkdir(parents=True)
        s = Sshd(d, f'command="{shell}",no-port-forwarding,no-pty {pub}\n').start()
        servers.append(s)
        fleet.append(f'[boards.b{i}]\nssh = "root@127.0.0.1:{s.port}{d / "work"}"\ntarget = "x86-64"\n'
                     f'groups = ["shelf"]\n')
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


def _timed(outdir: Path, selector: str, fleet: Path, jobs: int) -> float:
    t0 = time.perf_counter()
    res = validate(outdir, (selector,), fleet=FleetOptions(file=str(fleet), jobs=jobs))
    dt = time.perf_counter() - t0
    if not res.passed:
        raise SystemExit(f"{selector}: the run did not pass: {res.manifest['verdict']}")
    return dt


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
        one, five, seq = [], [], []
        for _ in range(args.rounds):  # interleaved, so a change in the host's load hits all alike
            one.append(_timed(out, "fleet:b1", fleet, 1))
            five.append(_timed(out, "fleet:shelf", fleet, BOARDS))
            seq.append(_timed(out, "fleet:shelf", fleet, 1))
        load_after = os.getloadavg()
        m1, m5 = statistics.median(one), statistics.median(five)
        print(f"host: {os.cpu_count()} cores, load average (1/5/15 min) before {load_before[0]:.2f}/"
              f"{load_before[1]:.2f}/{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/"
              f"{load_after[2]:.2f}")
        print(f"1 board : median {m1:.2f} s of {args.rounds} ({', '.join(f'{t:.2f}' for t in one)})")
        print(f"{BOARDS} boards: median {m5:.2f} s of {args.rounds} ({', '.join(f'{t:.2f}' for t in five)}), "
              f"--jobs {BOARDS}")
        ms = statistics.median(seq)
        print(f"{BOARDS} boards: median {ms:.2f} s of {args.rounds} ({', '.join(f'{t:.2f}' for t in seq)}), --jobs 1")
        print(f"ratio {BOARDS} boards / 1 board: {m5 / m1:.2f}x with --jobs {BOARDS}, {ms / m1:.2f}x with --jobs 1")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
