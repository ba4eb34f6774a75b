"""The ssh runner end to end against a real ``sshd`` on loopback whose python3 runs on emulated ARM kernels.

One sshd (root, 127.0.0.1, a free port, generated host + client keys in a temp dir). Each client key is bound in
authorized_keys to a "device personality" through a forced command that sets PATH: ``arm`` (python3 is the
emulated aarch64 python3.11 with numpy + onnxruntime — real SSH, real ARM kernels), ``noort`` (the host's bare
python3: no onnxruntime), ``nopy`` (no python3 at all), ``drop`` (python3 kills its own ssh session mid-run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeq.errors import DeviceError, UsageError
from tests.conftest import DIGITS_MODEL, arm_formats, listing
from tests.sshd import Sshd, free_port, keygen, require_sshd

pytestmark = [pytest.mark.emulator]

_free_port = free_port  # the real sshd helpers live in tests/sshd.py (shared with test_fleet.py)
_keygen = keygen


class Device:
    def __init__(self, root: Path, port: int, keys: dict[str, Path], known_hosts: Path, proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
        self.root, self.port, self.keys, self.known_hosts, self.proc = root, port, keys, known_hosts, proc

    @property
    def spec(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}/tmp"

    def runner(self, personality: str, target, **kw):  # type: ignore[no-untyped-def]
        from edgeq.validate.runners.ssh import SshOptions, SshRunner

        spec = kw.pop("spec", self.spec)
        return SshRunner(target, spec, SshOptions(identity=str(self.keys[personality]),
                                                  known_hosts=str(self.known_hosts), **kw))


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, emulator_env):  # type: ignore[no-untyped-def]
    require_sshd()
    from edgeq.emulator.qemu import launcher, python_wrapper
    from edgeq.targets import load_target

    env = emulator_env
    root = tmp_path_factory.mktemp("sshd")
    root.chmod(0o755)
    bins = {name: root / f"bin-{name}" for name in ("arm", "noort", "nopy", "drop", "short")}
    for b in bins.values():
        b.mkdir()
    arm = bins["arm"] / "python3"
    arm.write_text(python_wrapper(env, load_target("raspberry-pi-4")))
    (bins["noort"] / "python3").symlink_to("/usr/bin/python3.11")  # Debian's python3: no numpy/onnxruntime
    for tool in ("sh", "tar", "mktemp", "mkdir", "cat", "rm"):
        (bins["nopy"] / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    # Disconnect mid-run: on the real run (not the probe), kill this session's sshd process, by pid.
    (bins["drop"] / "python3").write_text(
        "#!/bin/sh\ncase \"$1\" in run_onnx.py)\n  p=$$\n  while [ \"$p\" -gt 1 ]; do\n"
        "    if [ \"$(cat /proc/$p/comm)\" = sshd ]; then kill -9 \"$p\"; sleep 5; fi\n"
        "    p=$(awk '{print $4}' /proc/$p/stat)\n  done;;\nesac\n"
        f"exec {arm} \"$@\"\n")
    # A broken device: after the real ARM run, it keeps only the first 3 rows of every output (the truncation
    # itself runs on the host's python to keep the test quick).
    (bins["short"] / "python3").write_text(
        f"#!/bin/sh\ncase \"$1\" in run_onnx.py)\n  {arm} \"$@\" || exit $?\n"
        f"  exec {sys.executable} -c \"import numpy as np; z = dict(np.load('$4')); "
        f"np.savez('$4', **{{k: v[:3] for k, v in z.items()}})\";;\nesac\nexec {arm} \"$@\"\n")
    for b in (arm, bins["drop"] / "python3", bins["short"] / "python3"):
        b.chmod(0o755)
    # aarch64 binaries (the C++ .pte runner) start through the emulator too, as on a board they start natively.
    arm_exec = root / "aarch64-launcher"
    arm_exec.write_text(launcher(env, load_target("raspberry-pi-4")))
    arm_exec.chmod(0o755)
    shell = root / "device-shell"
    shell.write_text("#!/bin/sh\ncase \"$1\" in\n"
                     + "".join(f"  {n}) PATH={b}{'' if n == 'nopy' else ':/usr/bin:/bin'};;\n" for n, b in bins.items())
                     + f"esac\nexport PATH EDGEQ_DEVICE_LAUNCHER={arm_exec}\n"
                     + "exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n")
    shell.chmod(0o755)
    keys, lines = {}, []
    for name in (*bins, "unauthorized"):
        keys[name] = root / f"client_{name}"
        pub = _keygen(keys[name])
        if name != "unauthorized":
            lines.append(f'command="{shell} {name}",no-port-forwarding,no-pty {pub}')
    sshd = Sshd(root, "\n".join(lines) + "\n").start()
    yield Device(root, sshd.port, keys, sshd.known_hosts, sshd.proc)
    sshd.stop()


@pytest.fixture
def pi4_export(tmp_path_factory: pytest.TempPathFactory, pi4_arm_export):  # type: ignore[no-untyped-def]
    """A private copy of the shared Pi 4 export (host + emulator results), so SSH results can be added to it."""
    out = tmp_path_factory.mktemp("ssh") / "pi4"
    shutil.copytree(pi4_arm_export.output, out)
    return type(pi4_arm_export)(out, pi4_arm_export.manifest)


def _formats() -> tuple[str, ...]:
    return arm_formats()


def test_spec_parsing() -> None:
    from edgeq.validate.runners.ssh_spec import parse_spec

    s = parse_spec("ssh://pi@raspberrypi.local:2222/home/pi/edgeq")
    assert (s.user, s.host, s.port, s.workdir) == ("pi", "raspberrypi.local", 2222, "/home/pi/edgeq")
    assert parse_spec("ssh://10.0.0.2").port == 22 and parse_spec("ssh://h").workdir == "/tmp"
    assert parse_spec("ssh://u@[::1]:22").host == "::1"
    for bad in ("ssh://", "ssh://u@h:99999", "ssh://u@h:port"):
        with pytest.raises(UsageError):
            parse_spec(bad)


def test_validate_over_ssh_on_arm_kernels(device: Device, pi4_export, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`edgeq validate OUTDIR --on ssh://...`: real sshd, real ARM onnxruntime; recorded next to the host results."""
    from edgeq.cli import main

    monkeypatch.setenv("EDGEQ_SSH_IDENTITY", str(device.keys["arm"]))
    monkeypatch.setenv("EDGEQ_SSH_KNOWN_HOSTS", str(device.known_hosts))
    monkeypatch.setenv("EDGEQ_SSH_REPEATS", "3")
    out = pi4_export.output
    # /tmp is shared with everything else on this machine: only folders this run leaves behind count.
    before = set(Path("/tmp").glob("edgeq-run.*"))
    assert main(["-q", "validate", str(out), "--on", device.spec]) == 0
    import json

    m = json.loads((out / "edgeq.json").read_text())
    runner = f"ssh://root@127.0.0.1:{device.port}"
    validated = [a for a in m["artifacts"] if a["validations"]]
    assert {a["format"] for a in validated} == set(_formats())
    for a in validated:
        by = {v["runner"]: v for v in a["validations"]}
        assert set(by) == {"host", "emulator", runner}
        v = by[runner]
        assert v["machine"] == "aarch64" and v["cpu_model"] == "Cortex-A72" and not v["emulated"]
        assert "asimd" in v["features"] and v["latency_kind"] == "device" and v["latency_ms"] > 0
        assert ("onnxruntime 1.31.1" if a["format"] == "onnx" else "executorch-cpp") in v["runtime"]
        assert v["metrics"]["samples"] == 64
        # The fp32 model on ARM kernels matches the float reference closely; the INT8 one stays within budget.
        assert v["metrics"]["cosine_min"] > 0.99 and v["budget_check"]["passed"]
    assert m["config"]["validate_on"] == ["host", "emulator", device.spec] and m["verdict"]["passed"]
    # The same ARM kernels behind ssh and behind the emulator runner give the same numbers.
    for a in validated:
        by = {v["runner"]: v for v in a["validations"]}
        assert by[runner]["metrics"]["max_abs_diff"] == by["emulator"]["metrics"]["max_abs_diff"]
    assert runner in (out / "report.md").read_text()
    assert not list(device.root.glob("edgeq-run.*")) and set(Path("/tmp").glob("edgeq-run.*")) <= before  # cleaned up


def test_missing_onnxruntime_on_device(device: Device, pi4_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = device.runner("noort", None)
    assert r.describe()["machine"] == "x86_64"  # plain python3 is there, so the probe itself works
    out = pi4_export.output
    with pytest.raises(DeviceError, match="numpy, onnxruntime missing") as e:
        r.run(out / "model.int8.onnx", "onnx", out / "validation" / "inputs.npz", tmp_path)
    assert "pip install onnxruntime numpy" in e.value.hint and listing(tmp_path) == []
    if "pte" in _formats():  # the aarch64 .pte runner refuses a non-ARM device up front
        with pytest.raises(DeviceError, match="cross-built for aarch64"):
            r.run(out / "model.int8.pte", "pte", out / "validation" / "inputs.npz", tmp_path)


def test_missing_python_on_device(device: Device) -> None:
    with pytest.raises(DeviceError, match="python3 is not installed") as e:
        device.runner("nopy", None).probe()
    assert "apt-get install -y python3" in e.value.hint


def test_auth_failure(device: Device) -> None:
    with pytest.raises(DeviceError, match="authentication failed") as e:
        device.runner("unauthorized", None).probe()
    assert "ssh-copy-id" in e.value.hint and e.value.exit_code == 3


def test_unreachable_host(device: Device, digits_small, tmp_path: Path,  # type: ignore[no-untyped-def]
                          capsys: pytest.CaptureFixture[str]) -> None:
    from edgeq.cli import main

    closed = _free_port()
    with pytest.raises(DeviceError, match="unreachable"):
        device.runner("arm", None, spec=f"ssh://root@127.0.0.1:{closed}").probe()
    # `edgeq export --validate-on ssh://...` reaches the device before any slow work (the progress log never gets
    # to loading the model — an order, not a duration, so a loaded machine gives the same verdict), writes nothing.
    calib, _ = digits_small
    rc = main(["export", DIGITS_MODEL, "--calib", str(calib), "--target", "raspberry-pi-4",
               "--validate-on", f"host,ssh://root@127.0.0.1:{closed}", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 3 and "the device is unreachable" in err and listing(tmp_path) == []
    assert "loading model" not in err, err


def test_disconnect_mid_run_leaves_folder_untouched(device: Device, pi4_export, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from edgeq.commands.validate import validate

    monkeypatch.setenv("EDGEQ_SSH_IDENTITY", str(device.keys["drop"]))
    monkeypatch.setenv("EDGEQ_SSH_KNOWN_HOSTS", str(device.known_hosts))
    out = pi4_export.output
    before = {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()}
    with pytest.raises(DeviceError, match="connection to the device was lost"):
        validate(out, (device.spec,))
    assert {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()} == before
    assert not [p for p in out.parent.iterdir() if "edgeq-tmp" in p.name]


def test_output_shape_mismatch_from_device(device: Device, pi4_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A device returning outputs for fewer samples than sent is a DeviceError, not a metric; nothing is kept."""
    out = pi4_export.output
    r = device.runner("short", None, repeats=1)
    with pytest.raises(DeviceError, match="output shape mismatch") as e:
        r.run(out / "model.int8.onnx", "onnx", out / "validation" / "inputs.npz", tmp_path)
    assert "(3, 10)" in str(e.value) and listing(tmp_path) == []
