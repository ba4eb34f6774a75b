"""The Pi C++ app (``sample_apps/raspberry_pi_cpp``) consumes any target's export through edgeq.json: it takes the
.pte's input names, shapes, dtypes and preprocessing from the manifest, checks them against the program, and its
outputs reproduce what the manifest recorded — natively for every target profile, and cross-built for aarch64 under
qemu for a Pi and android-arm64 (whose source signature says dynamic batch while the program is fixed at 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeq.targets import list_targets
from edgeq.validate.device.tensor_io import read_tensors, write_tensors

pytestmark = pytest.mark.slow
FIX = Path(__file__).resolve().parent / "fixture_models.py"
MEAN, STD = 0.5, 0.5


@pytest.fixture(scope="module")
def app() -> Path:
    from edgeq.executorch.cpp_runner import build_runner

    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("cmake / c++ not installed (make system-deps)")
    return build_runner("x86_64")  # cached by source hash: instant after the first build


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real handwritten digits as 8×8 PNG class folders: calibration and a disjoint evaluation set."""
    from tests.test_imagefolder import _digit_folders

    d = tmp_path_factory.mktemp("digits_png")
    return _digit_folders(d / "calib", 4), _digit_folders(d / "ev", 2, 4)


@pytest.fixture(scope="module")
def export_for(tmp_path_factory: pytest.TempPathFactory, folders: tuple[Path, Path]) -> Callable[[str], Path]:
    """One .pte export per target, from image folders (so the preprocessing is recorded), made on first use."""
    import edgeq
    from edgeq.config import SearchOptions
    from edgeq.imagefolder import Preprocess

    done: dict[str, Path] = {}

    def make(target: str) -> Path:
        if target not in done:
            out = tmp_path_factory.mktemp(target) / "out"
            calib, ev = folders
            edgeq.export(f"{FIX}:tiny_cnn", calib=str(calib), eval=str(ev), output=out, target=target,
                         formats=("pte",), validate_on=("host",), search=SearchOptions(mode="off"),
                         preprocess=Preprocess(channels=1, mean=(MEAN,), std=(STD,)),
                         budget=edgeq.Budget(max_accuracy_drop=100.0, min_cosine=0.0))
            done[target] = out
        return done[target]

    return make


def inputs_bin(export: Path, dest: Path) -> Path:
    """The export's validation inputs (+ labels) as a tensor file, the app's raw-tensor input."""
    with np.load(export / "validation" / "inputs.npz") as z:
        write_tensors(dest, {k: z[k] for k in z.files})
    return dest


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload,no-any-return]


def int8_pte(m: dict) -> dict:  # type: ignore[type-arg]
    return next(a for a in m["artifacts"] if a["format"] == "pte" and a["role"] == "candidate")


def result(stdout: str) -> dict:  # type: ignore[type-arg]
    line = [ln for ln in stdout.splitlines() if ln.startswith("EDGEQ_RESULT ")][-1]
    return json.loads(line.removeprefix("EDGEQ_RESULT "))  # type: ignore[no-any-return]


def assert_self_check(export: Path, stdout: str, runner: str = "host") -> None:
    """With no inputs the app runs the export's validation data and compares with its float reference on the
    device: the numbers are the ones edgeq recorded for the artifact."""
    m = json.loads((export / "edgeq.json").read_text())
    recorded = next(v for v in int8_pte(m)["validations"] if v["runner"] == runner)["metrics"]
    ref = result(stdout)["reference"]
    assert ref["top1_agreement"] == pytest.approx(recorded["top1_agreement"], abs=1e-6)
    assert ref["cosine_min"] == pytest.approx(recorded["cosine_min"], abs=1e-4)
    assert ref["max_abs_diff"] == pytest.approx(recorded["max_abs_diff"], rel=0.05, abs=1e-4)
    assert f"accuracy: {recorded['accuracy']:.4f}" in stdout and "edgeq.json recorded on host" in stdout


def assert_reproduces_manifest(export: Path, outputs: dict[str, np.ndarray], runner: str = "host") -> None:
    """The app's outputs give the metrics the manifest recorded for this artifact (same reference, same labels)."""
    from edgeq.validate.metrics import compare

    m = json.loads((export / "edgeq.json").read_text())
    recorded = next(v for v in int8_pte(m)["validations"] if v["runner"] == runner)["metrics"]
    with np.load(export / "validation" / "reference.npz") as ref, \
            np.load(export / "validation" / "inputs.npz") as z:
        got = compare({k: ref[k] for k in ref.files}, outputs, z["labels"]).to_dict()
    assert got["samples"] == recorded["samples"]
    assert got["top1_agreement"] == recorded["top1_agreement"] and got["accuracy"] == recorded["accuracy"]
    assert got["cosine_min"] == pytest.approx(recorded["cosine_min"], abs=1e-4)
    assert got["sqnr_db"] == pytest.approx(recorded["sqnr_db"], abs=1.0)


@pytest.mark.parametrize("target", list_targets())
def test_cpp_app_runs_every_targets_export(target: str, app: Path, export_for: Callable[[str], Path],
                                           folders: tuple[Path, Path], tmp_path: Path) -> None:
    from PIL import Image

    from edgeq.validate.runners import get_runner

    export = export_for(target)
    m = json.loads((export / "edgeq.json").read_text())
    io = int8_pte(m)["details"]["io"]["inputs"][0]
    assert io["preprocessing"]["mean"] == [MEAN] and io["batch"] == 1
    if target.startswith("android"):
        assert m["signature"]["inputs"][0]["shape"][0] == "batch"  # dynamic in the source, fixed in the program

    # Raw tensors: the manifest's input name picks the tensor; the `labels` tensor gives an accuracy line.
    r = run([str(app), str(export), "--inputs", str(inputs_bin(export, tmp_path / "in.bin")),
             "--outputs", str(tmp_path / "out.bin")])
    assert r.returncode == 0, r.stderr
    n = m["validation_data"]["samples"]
    assert f"{int8_pte(m)['name']} (" in r.stdout and f"on {n} samples, batch 1" in r.stdout
    assert "accuracy: " in r.stdout and "top-1: " in r.stdout
    out = read_tensors(tmp_path / "out.bin")
    assert list(out) == ["output"] and out["output"].shape == (n, 10)  # named from the manifest
    assert_reproduces_manifest(export, out)
    py = get_runner("host", None).run(export / int8_pte(m)["path"], "pte", export / "validation/inputs.npz", tmp_path)
    np.testing.assert_allclose(out["output"], py.outputs["output"], atol=1e-5)

    # No inputs: the export's own validation data (validation/inputs.npz, read by the app itself) and the on-device
    # comparison with the recorded float reference; an .npz given with --inputs is read the same way.
    r = run([str(app), str(export)])
    assert r.returncode == 0, r.stderr
    assert_self_check(export, r.stdout)
    r = run([str(app), str(export / "edgeq.json"), "--inputs", str(export / "validation/inputs.npz"),
             "--outputs", str(tmp_path / "npz.bin")])
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(read_tensors(tmp_path / "npz.bin")["output"], out["output"])

    # Images: the evaluation PNGs as PGM files, preprocessed by the app from the recorded spec, feed the model
    # exactly the tensors edgeq validated on (same order: class folders sorted, files sorted).
    pngs = sorted(p for c in sorted(folders[1].iterdir()) for p in sorted(c.iterdir()))[:6]
    pgms = []
    for p in pngs:
        pgms.append(tmp_path / f"{p.parent.name}_{p.stem}.pgm")
        Image.open(p).save(pgms[-1])
    r = run([str(app), str(export), "--image", *map(str, pgms), "--outputs", str(tmp_path / "img.bin"),
             "--dump-inputs", str(tmp_path / "fed.bin")])
    assert r.returncode == 0, r.stderr
    with np.load(export / "validation" / "inputs.npz") as z:
        np.testing.assert_array_equal(read_tensors(tmp_path / "fed.bin")["image"], z["image"][:6])
    np.testing.assert_array_equal(read_tensors(tmp_path / "img.bin")["output"], out["output"][:6])


def test_manifest_program_mismatch_is_a_clear_error(app: Path, export_for: Callable[[str], Path],
                                                    tmp_path: Path) -> None:
    src = export_for("android-arm64")
    bad = tmp_path / "tampered"
    shutil.copytree(src, bad)
    m = json.loads((bad / "edgeq.json").read_text())
    int8_pte(m)["details"]["io"]["inputs"][0]["shape"] = [1, 1, 9, 9]
    (bad / "edgeq.json").write_text(json.dumps(m))
    inp = inputs_bin(src, tmp_path / "in.bin")
    r = run([str(app), str(bad), "--inputs", str(inp)])
    assert r.returncode == 2
    assert ("edgeq.json says input 'image' is float32 [1, 1, 9, 9], the program in model.int8.pte takes "
            "float32 [1, 1, 8, 8] (dim 2 differs)") in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not r.stdout.strip()

    int8_pte(m)["details"]["io"]["inputs"][0]["shape"] = [4, 1, 8, 8]  # a fixed batch the program does not have
    (bad / "edgeq.json").write_text(json.dumps(m))
    r = run([str(app), str(bad), "--inputs", str(inp)])
    assert r.returncode == 2 and "(dim 0 differs)" in r.stderr

    # A manifest without details.io (written before it existed): the source signature says dynamic batch, the
    # program is fixed at 1 -> it runs with batch 1, like the Python app.
    del int8_pte(m)["details"]["io"]
    (bad / "edgeq.json").write_text(json.dumps(m))
    r = run([str(app), str(bad), "--inputs", str(inp)])
    assert r.returncode == 0, r.stderr
    assert "batch 1" in r.stdout


def test_tampered_failed_and_wrong_artifacts_are_refused(app: Path, export_for: Callable[[str], Path],
                                                         tmp_path: Path) -> None:
    src = export_for("raspberry-pi-5")
    inp = inputs_bin(src, tmp_path / "in.bin")
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    with open(bad / "model.int8.pte", "ab") as f:
        f.write(b"\0")
    r = run([str(app), str(bad), "--inputs", str(inp)])
    assert r.returncode == 2 and "does not match edgeq.json (sha256)" in r.stderr

    failed = tmp_path / "failed"
    shutil.copytree(src, failed)
    m = json.loads((failed / "edgeq.json").read_text())
    m["verdict"] = {"passed": False, "failures": ["pte-int8-static on host: SQNR 30 dB < 40 dB"]}
    (failed / "edgeq.json").write_text(json.dumps(m))
    r = run([str(app), str(failed), "--inputs", str(inp)])
    assert r.returncode == 1 and "FAILED" in r.stderr and "SQNR 30 dB" in r.stderr
    r = run([str(app), str(failed), "--inputs", str(inp), "--allow-failed", "--artifact", "pte-fp32"])
    assert r.returncode == 0 and r.stdout.startswith("pte-fp32 (")

    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    text = (broken / "edgeq.json").read_text()
    (broken / "edgeq.json").write_text(text[: len(text) // 2])  # a copy cut short
    r = run([str(app), str(broken)])
    assert r.returncode == 2 and "edgeq.json: invalid JSON at line" in r.stderr

    r = run([str(app), str(src), "--inputs", str(inp), "--artifact", "nope"])
    assert r.returncode == 2 and "no artifact named 'nope'; .pte artifacts: pte-fp32, pte-int8-static" in r.stderr
    r = run([str(app), str(src), "--image", str(tmp_path / "in.bin")])
    assert r.returncode == 2 and "not a PPM/PGM image" in r.stderr
    write_tensors(tmp_path / "wrong.bin", {"pixels": np.zeros((2, 1, 8, 8), np.float32)})
    r = run([str(app), str(src), "--inputs", str(tmp_path / "wrong.bin")])
    assert r.returncode == 2 and "has no tensor named 'image' (it holds: pixels)" in r.stderr


def test_recorded_resize_and_crop_match_pillow(app: Path, export_for: Callable[[str], Path], tmp_path: Path) -> None:
    """RGB images of other sizes, grey-converted, resized (Pillow's bilinear) and centre-cropped to the program's
    8×8: the app's tensors equal edgeq.imagefolder's, bit for bit."""
    from PIL import Image

    from edgeq.imagefolder import Preprocess, load_image_folder

    src = export_for("raspberry-pi-4")
    exp = tmp_path / "exp"
    shutil.copytree(src, exp)
    spec = Preprocess(channels=1, resize=9, crop=(8, 8), mean=(0.4,), std=(0.3,))
    m = json.loads((exp / "edgeq.json").read_text())
    int8_pte(m)["details"]["io"]["inputs"][0]["preprocessing"] = spec.to_dict()
    (exp / "edgeq.json").write_text(json.dumps(m))
    rng = np.random.default_rng(0)
    (tmp_path / "png").mkdir()
    ppms = []
    for i, (h, w) in enumerate([(13, 10), (31, 17), (9, 9), (12, 40)]):
        px = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(px, "RGB").save(tmp_path / "png" / f"{i}.png")
        ppms.append(tmp_path / f"{i}.ppm")
        Image.fromarray(px, "RGB").save(ppms[-1])
        r = run([str(app), str(exp), "--image", str(ppms[-1]), "--dump-inputs", str(tmp_path / f"{i}.bin")])
        assert r.returncode == 0, r.stderr
    want = load_image_folder(tmp_path / "png", spec, "image")[0]["image"]  # each image alone: sizes differ
    got = np.concatenate([read_tensors(tmp_path / f"{i}.bin")["image"] for i in range(len(ppms))])
    np.testing.assert_array_equal(got, want)


# --- aarch64 under qemu ------------------------------------------------------------------------------------

@pytest.mark.emulator
@pytest.mark.parametrize("target", ["raspberry-pi-4", "android-arm64"])
def test_cpp_app_on_emulated_arm(target: str, app: Path, export_for: Callable[[str], Path], emulator_env,  # type: ignore[no-untyped-def]
                                 tmp_path: Path) -> None:
    from edgeq.emulator import qemu
    from edgeq.executorch.cpp_runner import build_runner
    from edgeq.targets import load_target

    arm = build_runner("aarch64", executorch_root=emulator_env.executorch_root)
    export = export_for(target)
    inp = inputs_bin(export, tmp_path / "in.bin")
    r = qemu.run(emulator_env, load_target(target), [str(arm), str(export), "--outputs", str(tmp_path / "arm.bin")],
                 check=False, extra_env={"LD_LIBRARY_PATH": str(emulator_env.executorch_root / "lib")})
    assert r.returncode == 0, r.stderr
    assert "batch 1" in r.stdout
    assert_self_check(export, r.stdout)  # the ARM kernels reproduce the host-recorded metrics on this model
    arm_out = read_tensors(tmp_path / "arm.bin")
    assert_reproduces_manifest(export, arm_out)
    host = run([str(app), str(export), "--inputs", str(inp), "--outputs", str(tmp_path / "host.bin")])
    assert host.returncode == 0, host.stderr
    np.testing.assert_allclose(arm_out["output"], read_tensors(tmp_path / "host.bin")["output"], atol=1e-4)

    bad = tmp_path / "tampered"
    shutil.copytree(export, bad)
    m = json.loads((bad / "edgeq.json").read_text())
    int8_pte(m)["details"]["io"]["inputs"][0]["dtype"] = "float16"
    (bad / "edgeq.json").write_text(json.dumps(m))
    r = qemu.run(emulator_env, load_target(target), [str(arm), str(bad), "--inputs", str(inp)], check=False,
                 extra_env={"LD_LIBRARY_PATH": str(emulator_env.executorch_root / "lib")})
    assert r.returncode == 2 and "edgeq.json says input 'image' is float16" in r.stderr and "(dtype differs)" in r.stderr
