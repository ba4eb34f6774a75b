"""Low-rank, clustering, sparsity, QAT and the fine-tune loop: the mechanics, not numerical luck."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import mlp, tiny_cnn

from edgeq.compress.apply import compress_model
from edgeq.compress.lowrank import rank_for
from edgeq.compress.registry import param_count
from edgeq.compress.spec import CompressOptions
from edgeq.data import Dataset


def run(model: torch.nn.Module, spec: str, data: Dataset, steps: int = 4, **kw: object) -> tuple[torch.nn.Module, dict]:
    return compress_model(model, CompressOptions.from_spec(spec, steps=steps, batch_size=16, **kw), data, ["image"])


def test_rank_from_energy() -> None:
    sigma = torch.tensor([3.0, 2.0, 1.0, 0.1])  # energies 9, 4, 1, 0.01 of 14.01
    assert rank_for(sigma, 0.6) == 1 and rank_for(sigma, 0.9) == 2 and rank_for(sigma, 0.99) == 3


def test_lowrank_factorises_and_shrinks(digits_train: Dataset) -> None:
    m = mlp()
    with torch.no_grad():  # a rank-4 fc1 plus tiny noise: 90 % energy needs at most 4 components
        u, v = torch.randn(64, 4), torch.randn(4, 64)
        m.fc1.weight.copy_(u @ v / 8 + 1e-4 * torch.randn(64, 64))
    before = param_count(m)
    out, rec = run(m, "lowrank:0.9", digits_train)
    (step,) = rec["steps"]
    fc1 = next(layer for layer in step["layers"] if layer["layer"] == "fc1")
    assert fc1["rank"] <= 4
    assert isinstance(out.fc1, torch.nn.Sequential) and out.fc1[0].weight.shape == (fc1["rank"], 64)
    assert param_count(out) < before


def test_cluster_keeps_k_values_through_fine_tune(digits_train: Dataset) -> None:
    out, rec = run(tiny_cnn(), "cluster:16", digits_train)
    (step,) = rec["steps"]
    assert step["fine_tune"]["steps"] == 4
    for layer in step["layers"]:
        assert layer["distinct_values"] <= 16
    for mod in (out.c1, out.c2, out.fc1, out.fc2):
        assert mod.weight.unique().numel() <= 16
    assert step["palettised_bytes"] < step["int8_bytes"] < step["float32_bytes"]
    assert "cannot execute palettised" in step["note"]


def test_sparse_mask_survives_fine_tune(digits_train: Dataset) -> None:
    out, rec = run(tiny_cnn(), "sparse:0.6", digits_train)
    (step,) = rec["steps"]
    assert step["sparsity"] >= 0.59
    zeros = sum(int((m.weight == 0).sum()) for m in (out.c1, out.c2, out.fc1, out.fc2))
    assert zeros == step["zeros"]
    assert "neither smaller nor faster" in step["note"]


def test_same_seed_same_weights_other_seed_differs(digits_train: Dataset) -> None:
    a, _ = run(mlp(), "prune:0.3", digits_train, steps=3, seed=5)
    b, _ = run(mlp(), "prune:0.3", digits_train, steps=3, seed=5)
    c, _ = run(mlp(), "prune:0.3", digits_train, steps=3, seed=6)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_distillation_without_labels_and_user_train_fn(digits_train: Dataset, tmp_path: Path) -> None:
    unlabeled = Dataset(digits_train.inputs, None, "unlabeled")
    _, rec = run(mlp(), "sparse:0.3", unlabeled)
    assert rec["has_labels"] is False and rec["steps"][0]["fine_tune"]["steps"] == 4
    mod = tmp_path / "my_train.py"
    mod.write_text("CALLS = []\ndef step(model, budget):\n    CALLS.append(budget)\n")
    _, rec = run(mlp(), "lowrank:0.5", digits_train, fn=f"{mod}:step")
    assert rec["steps"][0]["fine_tune"]["train_fn"] == f"{mod}:step"


@pytest.mark.slow  # imports ExecuTorch's quantizer and traces twice: ~15 s idle, minutes on a loaded host
def test_qat_trains_under_fake_quant_and_records_ranges(digits_train: Dataset) -> None:
    m = tiny_cnn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out, rec = run(m, "qat", digits_train, steps=3)
    (step,) = rec["steps"]
    assert step["fake_quant_modules"] >= 4 and step["tensors_trained"] >= 6
    per_tensor = [r for r in step["ranges"].values() if "scale" in r]
    assert per_tensor and all(r["scale"] > 0 for r in per_tensor)
    assert not torch.equal(out.fc1.weight, before["fc1.weight"])  # the trained weights came back


def test_unknown_input_names_fail_clearly(digits_train: Dataset) -> None:
    from edgeq.errors import DataError

    with pytest.raises(DataError, match="lacks input"):
        compress_model(mlp(), CompressOptions.from_spec("sparse:0.5", steps=1), digits_train, ["pixels"])


def test_distill_loss_kinds() -> None:
    from edgeq.compress.train import distill_loss
    from edgeq.errors import UsageError

    s, t = torch.zeros(4, 3), torch.tensor([[9.0, 0, 0]] * 4)
    kl = distill_loss(s, t, None, 1.0, "kl")
    mse = distill_loss(s, t, None, 1.0, "mse")
    assert kl > 0 and torch.isclose(mse, torch.tensor(27.0))
    assert torch.isclose(distill_loss(s, t, None, 1.0, "auto"), kl)
    assert distill_loss(s, t, torch.zeros(4, dtype=torch.long), 1.0, "kl") > kl  # + cross-entropy with labels
    with pytest.raises(UsageError, match="distill-loss"):
        CompressOptions.from_spec("prune", distill="cosine")
