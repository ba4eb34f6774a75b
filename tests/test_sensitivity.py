"""Per-node sensitivity on the .pte path: PT2E node-by-node comparison on the digits CNN (real trained weights)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_pte_sensitivity_ranks_pt2e_nodes(digits_small) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("executorch")
    import torch

    from edgeq.config import QuantOptions
    from edgeq.data import load_dataset
    from edgeq.search.pte_sensitivity import pte_sensitivity
    from edgeq.search.sensitivity import sensitivity_table
    from edgeq.signature import TensorSpec
    from edgeq.targets import load_target
    from edgeq.zoo.digits import digits_cnn

    calib = load_dataset(digits_small[0]).head(32)
    model = digits_cnn()
    ep = torch.export.export(model, (torch.from_numpy(calib.inputs["image"][:1].copy()),))
    sig = [TensorSpec("image", "float32", (1, 1, 8, 8))]
    ranking = pte_sensitivity(ep, calib, sig, QuantOptions(), load_target(str(REPO / "edgeq/profiles/raspberry-pi-5.toml")),
                              calib_samples=32, max_samples=4)
    names = {n.name for n in ep.graph_module.graph.nodes}
    assert len(ranking) >= 5 and all(r.node in names for r in ranking)
    assert [r.added_nsr for r in ranking] == sorted((r.added_nsr for r in ranking), reverse=True)
    # quantization noise accumulates: every measured node is noisy but not destroyed on this well-behaved CNN
    assert all(20 < r.xmodel_sqnr_db < 80 for r in ranking)  # BN folded on both sides: like is compared with like
    rows = sensitivity_table(ranking, top=5)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and rows[0]["qdq_sqnr_db"] is None
    assert {"conv2d", "linear"} & {r.op_type for r in ranking}
