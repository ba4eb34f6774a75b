"""The built wheel works outside the repo, as a new user would use it: a fresh venv (the heavy dependencies are
borrowed from the running interpreter's site-packages through a .pth file, nothing is downloaded), then
`edgeq targets`, an export of a model defined in the user's cwd with a config file and --json, the report, and the
pytest plugin through its pytest11 entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

USER_MODEL = '''\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


def build() -> nn.Module:
    torch.manual_seed(0)
    return Net().eval()
'''

CONFIG = '''\
calib = "calib.npz"
eval = "eval.npz"
output = "out"
max-accuracy-drop = 5.0
calib-samples = 64
'''


def _copy_sources(dst: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                    "out", "bench")
    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv outside the repo with only the built wheel installed (dependencies via a .pth file)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_sources(tmp / "src")
    dist = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(dist), f"{src}{os.sep}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = dist.glob("edgeq-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "borrowed-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return env_dir


def _run(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


def test_wheel_in_a_fresh_venv(fresh: Path, tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    py = str(fresh / "bin" / "python")
    where = _run(fresh, user, py, "-c", "import edgeq, edgeq.resources as r; print(edgeq.__file__); "
                                        "print(r.sample_app_dir('raspberry_pi_cpp'))")
    assert where.returncode == 0 and str(fresh) in where.stdout and str(REPO) not in where.stdout

    targets = _run(fresh, user, str(fresh / "bin" / "edgeq"), "targets", "--json")
    assert targets.returncode == 0, targets.stderr
    assert {"raspberry-pi-5", "android-arm64"} <= {t["name"] for t in json.loads(targets.stdout)}

    (user / "mymodel.py").write_text(USER_MODEL)
    (user / "edgeq.toml").write_text(CONFIG)
    _run(fresh, user, py, "-c", "from pathlib import Path; import numpy as np; "
                                "from sklearn.datasets import load_digits; d = load_digits(); "
                                "x = (d.images / 16.0).astype('float32')[:, None]; y = d.target.astype('int64'); "
                                "np.savez('calib.npz', image=x[:300], labels=y[:300]); "
                                "np.savez('eval.npz', image=x[300:500], labels=y[300:500])")
    r = _run(fresh, user, str(fresh / "bin" / "edgeq"), "export", "mymodel:build", "--config", "edgeq.toml",
             "--json", "--no-search")
    assert r.returncode in (0, 1), r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["command"] == "export" and result["passed"] == (r.returncode == 0)
    assert any(m["metric"] == "accuracy drop" and m["limit"] == 5.0 for m in result["margins"])
    report = (user / result["report"]).read_text()
    assert "budget-line" in report and "vs size" in report
    assert json.loads((user / "out" / "edgeq.json").read_text())["edgeq_version"] == result_version(fresh, user)

    plug = _run(fresh, user, py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--edgeq-check", "out")
    assert plug.returncode == (0 if result["passed"] else 1), plug.stdout[-3000:]


def result_version(env_dir: Path, cwd: Path) -> str:
    r = _run(env_dir, cwd, str(env_dir / "bin" / "edgeq"), "--version")
    return r.stdout.split()[-1]
