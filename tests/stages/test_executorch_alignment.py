"""executorch-alignment: parses a .pte and fails the verdict when a segment is not 16 KB-aligned."""

from __future__ import annotations

import pytest

from edgeq.config import QuantOptions
from edgeq.errors import ArtifactError
from edgeq.executorch.layout import read_layout
from edgeq.manifest import Artifact
from edgeq.pipeline.stage import get_stage
from edgeq.pipeline.state import BuildState
from edgeq.targets import load_target


def _check(folder, name):  # type: ignore[no-untyped-def]
    art = Artifact(name=f"pte-{name}", path=name, format="pte", precision="fp32", role="candidate")
    ctx = BuildState(target=load_target("android-arm64"), fmt="pte", workdir=folder, quant=QuantOptions(),
                      artifacts=(art.refresh(folder),))
    res = get_stage("executorch-alignment").run(ctx)
    assert res.state is not None  # the check's finding, recorded on the artifact it describes
    return res, res.state.artifacts[0]


def test_aligned_file_passes(pte_pair):  # type: ignore[no-untyped-def]
    folder, _, layout, *_ = pte_pair
    res, art = _check(folder, layout.name)
    assert res.verdict_failures == ()
    row = art.details["pte_layout"]
    assert row["aligned"] and row["alignment"] == 16384
    assert all(s["offset"] % 16384 == 0 for s in row["segments"]) and row["delegate_segments"]


def test_default_layout_fails_with_offsets(pte_pair):  # type: ignore[no-untyped-def]
    folder, default, *_ = pte_pair
    res, art = _check(folder, default.name)
    bad = read_layout(default).misaligned(16384)
    assert len(res.verdict_failures) == len(bad) > 0
    i, off = bad[0]
    assert f"segment {i} starts at byte {off}, not a multiple of 16384" in res.verdict_failures[0]
    assert not art.details["pte_layout"]["aligned"]


def test_truncated_pte_is_an_artifact_error(pte_pair, tmp_path):  # type: ignore[no-untyped-def]
    _, _, layout, *_ = pte_pair
    broken = tmp_path / "broken.pte"
    broken.write_bytes(layout.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="broken.pte"):
        read_layout(broken)


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_android_pte_export_is_page_aligned(tmp_path, digits_small):  # type: ignore[no-untyped-def]
    """End to end: the ExecuTorch backend takes the layout pass's config; the check passes on the real file."""
    import edgeq

    calib, ev = digits_small
    res = edgeq.export("edgeq.zoo.digits:digits_cnn", calib=str(calib), eval=str(ev), output=tmp_path / "o",
                       target="android-arm64", formats=("pte",), validate_on=("host",))
    names = [(p["stage"], p["name"]) for p in res.manifest["passes"]]
    assert ("configure", "executorch-layout") in names and ("artifact", "executorch-alignment") in names
    check = next(p for p in res.manifest["passes"] if p["name"] == "executorch-alignment")
    assert check["failures"] == []
    for a in res.artifacts:
        if a.format == "pte":
            lay = read_layout(res.output / a.path)
            assert lay.segments and not lay.misaligned(16384) and lay.delegate_segments, a.name
            assert a.details["pte_layout"]["aligned"]
