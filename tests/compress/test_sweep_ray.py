"""``edgeq sweep --methods ... --ray ADDRESS``: the trials run as Ray tasks on a local Ray instance this test starts,
and the result equals the local-process run's. Ray is the optional extra ``edgeq[ray]``: skipped without it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeq.compress.sweep import connect_ray
from edgeq.errors import UsageError

TINY = Path(__file__).resolve().parent / "tiny_models.py"


def test_missing_ray_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when the extra is not installed
    with pytest.raises(UsageError, match="not installed") as e:
        connect_ray("127.0.0.1:6379")
    assert "edgeq[ray]" in e.value.hint


def test_unreachable_cluster_is_a_usage_error() -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster")
    import socket

    with socket.socket() as s:  # a port nothing listens on: bound, never listened
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(UsageError, match="no Ray cluster answers"):
            connect_ray(f"127.0.0.1:{port}")
    with pytest.raises(UsageError, match="not host:port"):
        connect_ray("nowhere")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    import logging
    import shutil
    import tempfile

    # A short temp dir: Ray's socket paths must stay under the 107-byte AF_UNIX limit.
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                   _temp_dir=temp)
    try:
        yield str(ctx.address_info["gcs_address"])
    finally:
        ray.shutdown()  # stops the processes this init started, nothing else
        shutil.rmtree(temp, ignore_errors=True)


def _cli_sweep(out: Path, digits_npz: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", "sweep", f"{TINY}:tiny_cnn", "--calib", str(digits_npz),
                        "--methods", "prune:0.5", "--format", "onnx", "--train-steps", "2", "--train-batch", "16",
                        "--max-eval-samples", "64", "--calib-samples", "32", "--min-cosine", "0.5",
                        "--max-accuracy-drop", "100", "-o", str(out), *extra], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    return json.loads((out / "sweep.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.slow  # four small exports (two per run) plus a Ray start: ~1 min idle
def test_ray_sweep_matches_local_processes(tmp_path: Path, digits_npz: Path, ray_address: str) -> None:
    local = _cli_sweep(tmp_path / "local", digits_npz, "--workers", "2")
    remote = _cli_sweep(tmp_path / "ray", digits_npz, "--ray", ray_address)
    assert remote["executor"] == f"ray {ray_address}" and local["executor"].endswith("local process(es)")

    def verdict(s: dict) -> list[tuple]:
        return [(r["name"], r["passed"], r["bytes"], r["accuracy"]) for r in s["variants"]]

    assert verdict(remote) == verdict(local) and [n for n, *_ in verdict(local)] == ["int8", "prune-0.5"]
    assert remote["pick"] == local["pick"]
    assert (tmp_path / "ray" / "trials" / "prune-0.5" / "edgeq.json").is_file()  # written by the Ray worker
