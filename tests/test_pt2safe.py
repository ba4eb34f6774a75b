"""`.pt2` files are loaded without pickle: payloads in any member are refused and never run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeq.errors import ModelSourceError
from edgeq.pt2safe import load_exported_program
from edgeq.source import load_source


class Payload:
    """Unpickling this creates a file: proof that code from the model file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    p = tmp_path_factory.mktemp("pt2") / "m.pt2"
    torch.export.save(torch.export.export(m, (torch.randn(2, 1, 4, 4),)), str(p))
    return p


def rewrite(src: Path, dst: Path, edit: dict[str, bytes], add: dict[str, bytes] | None = None) -> Path:
    """Copy a .pt2 replacing members whose name ends with a key of ``edit``; add members of ``add``."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        root = z.namelist()[0].split("/")[0]
        for info in z.infolist():
            data = next((v for k, v in edit.items() if info.filename.endswith(k)), z.read(info.filename))
            out.writestr(info.filename, data)
        for k, v in (add or {}).items():
            out.writestr(f"{root}/{k}", v)
    return dst


def saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_a_plain_archive_loads_without_pickle(good_pt2: Path) -> None:
    src = load_source(str(good_pt2))
    assert src.kind == "pt2" and src.declared_signature and src.declared_signature[0].shape[1:] == (1, 4, 4)
    y = load_exported_program(good_pt2).module()(torch.randn(2, 1, 4, 4))
    assert tuple(y.shape) == (2, 4)


def test_payload_in_sample_inputs_is_refused_and_never_runs(good_pt2: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = rewrite(good_pt2, tmp_path / "evil.pt2", {"sample_inputs/model.pt": saved(((Payload(marker),), {}))})
    with pytest.raises(ModelSourceError, match="pickle"):
        load_source(str(evil))
    assert not marker.exists()


def test_pickled_weight_is_refused_unless_trusted(good_pt2: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    with zipfile.ZipFile(good_pt2) as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        cfg = json.loads(z.read(cfg_name))
    first = next(iter(cfg["config"].values()))
    first["use_pickle"] = True
    evil = rewrite(good_pt2, tmp_path / "evil.pt2", {cfg_name.split("/", 1)[1]: json.dumps(cfg).encode(),
                                                     f"weights/{first['path_name']}": saved(Payload(marker))})
    with pytest.raises(ModelSourceError, match="stored with pickle"):
        load_source(str(evil))
    assert not marker.exists()


def test_trust_pickle_loads_a_pickled_weight_with_a_warning(good_pt2: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with zipfile.ZipFile(good_pt2) as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        cfg = json.loads(z.read(cfg_name))
    name, entry = next(iter(cfg["config"].items()))
    entry["use_pickle"] = True
    ep = torch.export.load(str(good_pt2))
    tensor = nn.Parameter(ep.state_dict[name].detach().clone())
    f = rewrite(good_pt2, tmp_path / "pickled.pt2", {cfg_name.split("/", 1)[1]: json.dumps(cfg).encode(),
                                                     f"weights/{entry['path_name']}": saved(tensor)})
    with pytest.raises(ModelSourceError):
        load_source(str(f))
    src = load_source(str(f), trust_pickle=True)
    assert src.kind == "pt2" and "--trust-pickle" in capsys.readouterr().err


def test_compiled_code_and_legacy_members_are_refused(good_pt2: Path, tmp_path: Path) -> None:
    f = rewrite(good_pt2, tmp_path / "aoti.pt2", {}, add={"aotinductor/model/model.so": b"\x7fELF"})
    with pytest.raises(ModelSourceError, match="not a plain torch.export member"):
        load_source(str(f))
    legacy = tmp_path / "legacy.pt2"
    with zipfile.ZipFile(legacy, "w") as z:
        z.writestr("version", "1.0")
        z.writestr("serialized_state_dict.pt", saved({}))
    with pytest.raises(ModelSourceError):
        load_source(str(legacy))


@pytest.mark.parametrize("command", ["inspect", "export"])
def test_cli_refuses_a_payload_exit_2_nothing_written(good_pt2: Path, tmp_path: Path, command: str) -> None:
    import numpy as np

    marker = tmp_path / "PWNED"
    rewrite(good_pt2, tmp_path / "evil.pt2", {"sample_inputs/model.pt": saved(((Payload(marker),), {}))})
    np.savez(tmp_path / "c.npz", x=np.zeros((8, 1, 4, 4), np.float32))
    args = ["evil.pt2"] if command == "inspect" else ["evil.pt2", "--calib", "c.npz", "-o", "out"]
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", command, *args], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "refusing to load a pickle-backed archive" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "evil.pt2"]
