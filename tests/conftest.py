"""Shared fixtures: real digits data on disk, the trained digits CNN, a cache dir per session."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from tests.shelf import shelf, ssh_env  # noqa: F401  (the five-sshd fleet fixtures, for test_fleet and faults)

# Fixtures that run a whole export or a search (tens of seconds each, more on a loaded host): a test that uses one is
# end to end, so it is marked `slow` and `make test-fast` (the inner loop, under 3 minutes on 2 cores) leaves it out.
# `make test` runs everything.
EXPORT_FIXTURES = frozenset({
    "pte_export", "encoder_export",  # test_executorch: the digits CNN and a text encoder to .pte
    "tiny_lm_export", "peaked_4bit",  # tests/llm: the tiny Llama exported in both formats; a 4-bit .pte lowering
    "swept", "searched", "plain", "both_formats",  # test_sweep, test_search, test_rebuild
    "shelf",  # five sshd boards and their exports (test_fleet, faults/test_board_drop)
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if EXPORT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

# Trained weights and the emulator live in the user cache; tests share one per machine to stay fast,
# unless the caller isolates them with EDGEQ_CACHE_DIR.
os.environ.setdefault("ORT_LOGGING_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
DIGITS_MODEL = "edgeq.zoo.digits:digits_cnn"


# A suite started in the background by a non-interactive shell (`cmd &`) inherits SIGINT *ignored*, and an ignored
# signal stays ignored across exec: the Ctrl-C tests' children would sleep through their SIGINT. Handling it here
# fixes that for every child (exec resets a handled signal to the default, and Python then installs
# KeyboardInterrupt).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(calib.npz, eval.npz) from scikit-learn's load_digits, keyed `image` + `labels`."""
    from edgeq.zoo.digits import write_digits_data

    return write_digits_data(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digits_small(tmp_path_factory: pytest.TempPathFactory, digits_files: tuple[Path, Path]) -> tuple[Path, Path]:
    """A 200-sample calibration set and a 150-sample eval set: enough signal, quick to run."""
    calib, ev = digits_files
    d = tmp_path_factory.mktemp("digits_small")
    with np.load(calib) as z:
        np.savez(d / "calib.npz", image=z["image"][:200], labels=z["labels"][:200])
    with np.load(ev) as z:
        np.savez(d / "eval.npz", image=z["image"][:150], labels=z["labels"][:150])
    return d / "calib.npz", d / "eval.npz"


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """One ONNX export of the digits CNN shared by read-only tests (check, manifest, reports)."""
    import edgeq

    calib, ev = digits_small
    out = tmp_path_factory.mktemp("exports") / "digits"
    return edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), output=out)


def arm_formats() -> tuple[str, ...]:
    """Formats the emulator/SSH tests cover: ONNX, plus .pte when the ExecuTorch backend is installed."""
    from edgeq.backends.base import get_backend

    try:
        get_backend("pte")
    except Exception:
        return ("onnx",)
    return ("onnx", "pte")


@pytest.fixture(scope="session")
def emulator_env():  # type: ignore[no-untyped-def]
    """The ARM emulator (set up here when possible — `make test` does it first); skips when it cannot be."""
    from edgeq.emulator import sysroot
    from edgeq.emulator.env import find_qemu
    from edgeq.targets import load_target

    if not sysroot.is_ready():
        if os.geteuid() != 0 and find_qemu() is None:
            pytest.skip("ARM emulator not set up and qemu missing (run `edgeq emulator setup` as root)")
        sysroot.setup(load_target("raspberry-pi-4"))
    return sysroot.load()


@pytest.fixture(scope="session")
def pi4_arm_export(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path], emulator_env):  # type: ignore[no-untyped-def]
    """The digits CNN for raspberry-pi-4, both formats, validated by default (auto) on host + emulated Cortex-A72.
    Read-only: tests that add validations work on a copy."""
    import edgeq

    calib, ev = digits_small
    return edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), target="raspberry-pi-4",
                        formats=arm_formats(), max_eval_samples=64,
                        output=tmp_path_factory.mktemp("exports") / "pi4-arm")


def listing(folder: Path) -> list[str]:
    """Everything under ``folder`` (to assert that a failed run wrote nothing)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def outlier_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-feature input whose first feature is 1000x the others: static INT8 misses a tight budget on it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 16)).astype(np.float32)
    x[:, 0] *= 1000.0
    p = tmp_path_factory.mktemp("outlier") / "x.npz"
    np.savez(p, x=x)
    return p
