"""executorch-layout: Android targets serialize with delegate segments on 16 KB boundaries; outputs unchanged."""

from __future__ import annotations

import numpy as np

from edgeq.executorch.layout import read_layout
from edgeq.pipeline.stage import get_stage
from edgeq.targets import load_target


def test_configure_sets_backend_config(pte_pair):  # type: ignore[no-untyped-def]
    *_, kwargs, log = pte_pair
    assert kwargs == {"extract_delegate_segments": True, "segment_alignment": 16384}
    assert [p["name"] for p in log] == ["executorch-layout"] and log[0]["stage"] == "configure"
    spec = get_stage("executorch-layout")
    assert spec.formats == ("pte",)
    assert spec.applies_to(load_target("android-arm64-i8mm")) and not spec.applies_to(load_target("ios-arm64"))
    assert not spec.applies_to(load_target("raspberry-pi-5"))


def test_layout_moves_segments_to_pages_and_keeps_outputs(pte_pair):  # type: ignore[no-untyped-def]
    from executorch.runtime import Runtime

    _, default, layout, x, ref, _, _ = pte_pair
    d, lay = read_layout(default), read_layout(layout)
    assert d.misaligned(16384), "ExecuTorch's default alignment is not page-sized"
    assert lay.segment_base_offset == 16384 and not lay.misaligned(16384)
    assert lay.delegate_segments and lay.inline_delegates == 0  # the XNNPACK blob is its own segment
    assert len(lay.segments) == len(d.segments)
    rt = Runtime.get()
    for path in (default, layout):
        out = rt.load_program(str(path)).load_method("forward").execute([x])[0].numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
