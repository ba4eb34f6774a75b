"""--compress parsing, the [compress] config table, and CLI errors that name the bad item."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeq.compress.spec import (
    ClusterConfig,
    CompressOptions,
    LowRankConfig,
    PruneConfig,
    QatConfig,
    SparseConfig,
    format_spec,
    parse_spec,
)
from edgeq.config_file import load_config
from edgeq.errors import UsageError

TINY = Path(__file__).resolve().parent / "tiny_models.py"


def test_parse_in_order() -> None:
    m = parse_spec("prune:0.3,lowrank:0.9,cluster:16,qat")
    assert m == (PruneConfig(0.3), LowRankConfig(0.9), ClusterConfig(16), QatConfig())
    assert format_spec(m) == "prune:0.3,lowrank:0.9,cluster:16,qat"
    assert parse_spec("sparse") == (SparseConfig(),)
    assert parse_spec("") == ()


@pytest.mark.parametrize(("spec", "named"), [
    ("prune:0.3,bogus:2", "bogus:2"), ("prune:abc", "prune:abc"), ("prune:1.5", "prune:1.5"),
    ("cluster:1", "cluster:1"), ("cluster:0.5", "cluster:0.5"), ("qat:3", "qat:3"), ("prune:0.2,,qat", "empty"),
    ("prune:0.2,prune:0.3", "'prune' listed twice"), ("qat,prune:0.2", "qat must come last"),
    ("lowrank:nan", "lowrank:nan"),
])
def test_bad_items_are_named(spec: str, named: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_spec(spec)
    assert named in e.value.cause


def test_config_file_table(tmp_path: Path) -> None:
    p = tmp_path / "edgeq.toml"
    p.write_text('model = "m:f"\ncalib = "c.npz"\noutput = "out"\n'
                 '[compress]\nmethods = "prune:0.25,cluster:16"\nsteps = 7\nlr = 0.002\n')
    cfg = load_config(p)
    assert cfg.compress.methods == (PruneConfig(0.25), ClusterConfig(16))
    assert cfg.compress.train.steps == 7 and cfg.compress.train.lr == 0.002
    p.write_text('model = "m:f"\ncalib = "c.npz"\noutput = "out"\n[compress]\nmethods = "prune"\nstepz = 7\n')
    with pytest.raises(UsageError, match="stepz"):
        load_config(p)


def test_to_dict_records_parameters() -> None:
    d = CompressOptions.from_spec("prune:0.4,qat", steps=5).to_dict()
    assert d["spec"] == "prune:0.4,qat"
    assert d["methods"][0] == {"method": "prune", "ratio": 0.4, "steps": 0}
    assert d["train"]["steps"] == 5


def test_cli_bad_spec_exits_2_and_names_item(tmp_path: Path, digits_npz: Path) -> None:
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", "export", f"{TINY}:tiny_cnn", "--calib", str(digits_npz),
                        "--compress", "prune:0.3,shrink:2", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "shrink:2" in r.stderr
    assert not out.exists()
