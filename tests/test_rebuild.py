"""The manifest records the resolved configuration; rebuilding from it gives byte-identical artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgeq
from edgeq.errors import TargetError, UsageError
from edgeq.hashing import sha256_file
from tests.conftest import DIGITS_MODEL


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]) -> edgeq.ExportResult:
    calib, ev = digits_small
    return edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), formats="onnx,pte", validate_on=("host",),
                        max_eval_samples=32, quant=edgeq.QuantOptions(calibration="percentile", max_calibration_samples=32),
                        output=tmp_path_factory.mktemp("rebuild") / "a")


def test_manifest_records_every_option(both_formats: edgeq.ExportResult) -> None:
    rec = both_formats.manifest["config"]["recorded"]
    fields = {"model", "calib", "eval", "target", "formats", "quant", "budget", "eval_fraction", "max_eval_samples",
              "seed", "validate_on", "opset", "search", "version", "preprocess", "compress", "outliers", "rounding"}
    assert set(rec) == fields
    assert rec["quant"]["calibration"] == "percentile" and Path(rec["calib"]).is_absolute()
    resolved = both_formats.manifest["config"]["resolved_quant"]["onnx"]
    # from x86-64.toml: U8S8 + reduce_range, or U8S8 without it on a VNNI host (the TOML names both); the stage's choice
    chosen = next(p for p in both_formats.manifest["passes"] if p["name"] == "quant-scheme")["details"]["chosen"]
    assert (resolved["activation_type"], resolved["reduce_range"]) == (chosen["activation_type"], chosen["reduce_range"])
    assert "trust_pickle" not in rec  # a manifest must never switch pickle loading on for a rebuild


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_rebuild_from_manifest_is_byte_identical(both_formats: edgeq.ExportResult, tmp_path: Path) -> None:
    cfg = edgeq.load_config(both_formats.output / "edgeq.json", output=tmp_path / "b")
    assert cfg.quant.calibration == "percentile" and cfg.formats == ("onnx", "pte")
    again = edgeq.run_pipeline(cfg)
    names = [a.name for a in both_formats.artifacts]
    assert names == [a.name for a in again.artifacts] and {"onnx-int8-static", "pte-int8-static"} <= set(names)
    for a in both_formats.artifacts:
        b = again.artifact(a.name)
        assert sha256_file(both_formats.output / a.path) == sha256_file(again.output / b.path) == b.sha256, a.name
    for rel in ("validation/inputs.npz", "validation/reference.npz"):
        assert sha256_file(both_formats.output / rel) == sha256_file(again.output / rel)


def test_changed_target_profile_is_refused(both_formats: edgeq.ExportResult, tmp_path: Path) -> None:
    m = json.loads((both_formats.output / "edgeq.json").read_text())
    m["target"]["sha256"] = "0" * 64
    (tmp_path / "edgeq.json").write_text(json.dumps(m))
    with pytest.raises(TargetError, match="changed since the recorded export"):
        edgeq.run_pipeline(edgeq.load_config(tmp_path, output=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_config_errors(both_formats: edgeq.ExportResult, tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps({"config": {"formats": ["onnx"]}}))
    with pytest.raises(UsageError, match="records no rebuildable configuration"):
        edgeq.load_config(tmp_path / "old.json", output=tmp_path / "x")
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", "export", "--config", str(both_formats.output),
                        "-o", str(tmp_path / "c"), "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "also given: --seed" in r.stderr and not (tmp_path / "c").exists()
