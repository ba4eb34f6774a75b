"""Host x86 vs emulated ARM: the digits CNN (ONNX and .pte) on raspberry-pi-4 (Cortex-A72) and raspberry-pi-5
(Cortex-A76), plus the wall time of `edgeq emulator setup` from an empty cache and of one emulated validation.

Metrics are against the float model (same reference, same metric code as `edgeq export`); the two "host vs ARM"
columns compare the host's and the ARM kernels' outputs of the same INT8 artifact directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.table import Table

TITLE = "Host vs emulated ARM (digits CNN, Pi 4 / Pi 5)"
TARGETS = ("raspberry-pi-4", "raspberry-pi-5")


def _setup_from_empty() -> float | None:
    """`edgeq emulator setup` into an empty cache, downloads included (pip's own cache disabled)."""
    from edgeq.emulator.env import find_qemu

    if find_qemu() is None:
        return None
    tmp = Path(tempfile.mkdtemp(prefix="edgeq-bench-emu-"))
    try:
        env = {**os.environ, "EDGEQ_CACHE_DIR": str(tmp), "PIP_NO_CACHE_DIR": "1"}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edgeq.cli", "-q", "emulator", "setup"], env=env, check=True,
                       capture_output=True, timeout=1800)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(workdir: Path) -> Table:
    import edgeq
    from edgeq.backends.base import get_backend
    from edgeq.commands.validate import validate
    from edgeq.emulator import setup
    from edgeq.targets import load_target
    from edgeq.validate.metrics import compare
    from edgeq.validate.runners import get_runner
    from edgeq.zoo.digits import write_digits_data

    workdir.mkdir(parents=True, exist_ok=True)
    setup_s = _setup_from_empty()
    setup(load_target(TARGETS[0]))  # the user cache's environment (a no-op when present)
    calib, ev = write_digits_data(workdir / "data")
    formats = ["onnx"]
    try:
        get_backend("pte")
        formats.append("pte")
    except Exception:  # noqa: BLE001  ExecuTorch missing: ONNX only
        pass
    t = Table(["target", "artifact", "runner", "accuracy", "top-1 agree", "cos min", "SQNR dB", "max |Δ| vs float",
               "max |Δ| host vs ARM", "argmax flips host vs ARM", "latency ms (kind)"])
    validate_s: dict[str, float] = {}
    for name in TARGETS:
        target = load_target(name)
        out = workdir / name
        edgeq.export("edgeq.zoo.digits:digits_cnn", calib=str(calib), eval=str(ev), output=out, target=name,
                     formats=tuple(formats), validate_on=("host",))
        t0 = time.perf_counter()
        res = validate(out, ("emulator",))
        validate_s[name] = time.perf_counter() - t0
        host, arm = get_runner("host", target), get_runner("emulator", target)
        with np.load(out / "validation" / "reference.npz") as z:
            ref = {k: z[k] for k in z.files}
        with np.load(out / "validation" / "inputs.npz") as z:
            labels = z["labels"] if "labels" in z.files else None
        for a in res.manifest["artifacts"]:
            if not a["validations"]:
                continue
            outs = {}
            with tempfile.TemporaryDirectory() as tmp:
                for r in (host, arm):
                    outs[r.name] = r.run(out / a["path"], a["format"], out / "validation" / "inputs.npz", Path(tmp))
            h, e = outs["host"].outputs, outs["emulator"].outputs
            key = next(iter(ref))
            dx = float(np.max(np.abs(h[key].astype(np.float64) - e[key].astype(np.float64))))
            flips = float(np.mean(h[key].argmax(1) != e[key].argmax(1))) * 100
            for rname, rr in outs.items():
                m = compare(ref, rr.outputs, labels)
                where = "host x86" if rname == "host" else f"emulated {target.cpu.qemu_model}"
                t.add(name, a["name"], where, m.accuracy, m.top1_agreement, m.cosine_min, m.sqnr_db, m.max_abs_diff,
                      dx if rname != "host" else None, f"{flips:.2f} %" if rname != "host" else None,
                      f"{rr.latency_ms:.3f} ({rr.latency_kind})" if rr.latency_ms else None)
    t.notes.append("`edgeq emulator setup` from an empty cache (downloads included): "
                   + (f"{setup_s:.1f} s" if setup_s is not None else "skipped (qemu-user-static not installed)"))
    t.notes.append("one emulated validation (`edgeq validate OUTDIR --on emulator`, every artifact of both formats): "
                   + ", ".join(f"{k} {v:.1f} s" for k, v in validate_s.items()))
    total = (setup_s or 0) + sum(validate_s.values())
    t.notes.append(f"set-up + both emulated validations: {total:.1f} s (target: under 300 s in CI)")
    t.notes.append("Emulated latency is qemu instruction-level time on this host: it is not device speed.")
    return t
