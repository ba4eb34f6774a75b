"""``edgeq check`` re-validates a ``.bpte`` like the other artifacts: the bundled program runs its bundled inputs
and must give the bundled expected outputs. A tampered bundle (with the manifest re-sealed to match) fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgeq
from edgeq.errors import ArtifactError
from edgeq.executorch.bundle import read_bundle
from tests.faults.conftest import reseal
from tests.test_cli import edgeq as edgeq_cli

BUNDLE = "model.int8.bpte"


@pytest.fixture
def pte_folder(tmp_path: Path, tiny_pte_export: Path) -> Path:
    out = tmp_path / "tiny-pte"
    shutil.copytree(tiny_pte_export, out)
    return out


def _bundle_validation(res: edgeq.CheckResult) -> dict:  # type: ignore[type-arg]
    art = next(a for a in res.artifacts if a.format == "bpte")
    assert len(art.validations) == 1
    return art.validations[0].to_dict()


def _replace_expected(folder: Path, fn) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the first case's expected output inside the flatbuffer in place, then re-seal the manifest."""
    path = folder / BUNDLE
    blob = path.read_bytes()
    _, cases = read_bundle(path)
    old = np.ascontiguousarray(cases[0][1][0]).tobytes()
    assert blob.count(old) == 1
    path.write_bytes(blob.replace(old, np.ascontiguousarray(fn(cases[0][1][0])).tobytes()))
    reseal(folder, BUNDLE)


@pytest.mark.slow  # one ExecuTorch export of the tiny CNN: ~25 s idle
def test_an_untouched_bundle_is_rerun_and_passes(pte_folder: Path) -> None:
    res = edgeq.check(pte_folder)
    v = _bundle_validation(res)
    assert res.passed and v["budget_check"]["passed"], res.failures
    assert v["budget_check"]["bundled"]["cases"] >= 1 and v["metrics"]["cosine_min"] > 0.98
    assert v["budget_check"]["bundled"]["max_abs_diff"] <= v["budget_check"]["bundled"]["atol"]


@pytest.mark.slow
def test_tampered_expected_outputs_fail_the_gate(pte_folder: Path) -> None:
    _replace_expected(pte_folder, lambda e: -e)
    r = edgeq_cli("check", str(pte_folder))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "pte-bundled on host" in r.stdout and "bundled case 0 output 0" in r.stdout, r.stdout[-2000:]


@pytest.mark.slow
def test_a_loosened_atol_in_the_manifest_is_capped(pte_folder: Path) -> None:
    _replace_expected(pte_folder, lambda e: e + 0.5 * float(np.ptp(e)))  # off by half the outputs' range
    m = json.loads((pte_folder / "edgeq.json").read_text())
    bundle = next(a for a in m["artifacts"] if a["format"] == "bpte")
    bundle["details"]["bundled"]["atol"] = 1e9  # the editor also widens the recorded tolerance
    (pte_folder / "edgeq.json").write_text(json.dumps(m))
    res = edgeq.check(pte_folder)
    v = _bundle_validation(res)
    assert not res.passed and "capped" in v["budget_check"]["bundled"]["atol_source"]
    assert any("pte-bundled" in f and "bundled case 0" in f for f in res.failures), res.failures


@pytest.mark.slow
def test_a_truncated_bundle_is_a_typed_error(pte_folder: Path) -> None:
    path = pte_folder / BUNDLE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    reseal(pte_folder, BUNDLE)
    with pytest.raises(ArtifactError, match="model.int8.bpte"):
        edgeq.check(pte_folder)
