"""Structured pruning: dependency tracking, physical shrinking, and refusal where channels are tied."""

from __future__ import annotations

import pytest
import torch
from tiny_models import mlp, residual, tiny_cnn

from edgeq.compress.deps import find_groups, shrink
from edgeq.compress.registry import param_count
from edgeq.data import Dataset

EX = (torch.rand(2, 1, 8, 8),)


def test_groups_follow_bn_pool_and_flatten() -> None:
    groups = {g.producer: g for g in find_groups(tiny_cnn(), EX)}
    assert set(groups) == {"c1", "c2", "fc1"}  # fc2 feeds the output: its width is the model's contract
    c1 = {s.fqn: s for s in groups["c1"].slices}
    assert {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "c2.weight"} <= set(c1)
    c2 = {s.fqn: s for s in groups["c2"].slices}
    assert c2["fc1.weight"].dim == 1 and c2["fc1.weight"].factor == 16  # 4×4 spatial positions per channel


def test_residual_add_blocks_tied_channels() -> None:
    groups = {g.producer for g in find_groups(residual(), EX)}
    assert groups == {"fc1"}


def test_shrink_removes_channels_everywhere() -> None:
    m = tiny_cnn()
    x = torch.rand(3, 1, 8, 8)
    groups = {g.producer: g for g in find_groups(m, EX)}
    shrink(m, groups["c2"], torch.tensor([0, 2, 5]))
    assert m.c2.weight.shape == (3, 8, 3, 3) and m.c2.out_channels == 3
    assert m.fc1.weight.shape == (32, 3 * 16) and m.fc1.in_features == 48
    groups = {g.producer: g for g in find_groups(m, EX)}
    shrink(m, groups["c1"], torch.tensor([1, 7]))
    assert m.bn.running_mean.shape == (2,) and m.bn.num_features == 2 and m.c2.weight.shape[1] == 2
    assert m(x).shape == (3, 10)


def test_shrink_keeps_the_function_of_kept_channels() -> None:
    m = mlp()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        m.fc2.weight[:, 10:] = 0  # channels 10.. contribute nothing: removing them must not change the output
        before = m(x)
    (g,) = find_groups(m, EX)
    shrink(m, g, torch.arange(10))
    with torch.no_grad():
        torch.testing.assert_close(m(x), before)


def test_prune_method_shrinks_params_and_fine_tunes(digits_train: Dataset) -> None:
    from edgeq.compress.apply import compress_model
    from edgeq.compress.spec import CompressOptions

    m = tiny_cnn()
    before = param_count(m)
    out, rec = compress_model(m, CompressOptions.from_spec("prune:0.5", steps=6, batch_size=16), digits_train,
                              ["image"])
    (step,) = rec["steps"]
    assert step["params_after"] < 0.6 * before
    assert all(layer["channels_after"] < layer["channels_before"] for layer in step["layers"])
    assert [t["steps"] for t in step["fine_tune"]] == [2, 2, 2]  # fine-tuned after each of 3 steps
    assert out(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_prune_refuses_a_model_without_groups(digits_train: Dataset) -> None:
    from edgeq.compress.apply import compress_model
    from edgeq.compress.spec import CompressOptions
    from edgeq.errors import UsageError

    single = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    with pytest.raises(UsageError, match="no prunable channel groups"):
        compress_model(single, CompressOptions.from_spec("prune:0.3", steps=1), digits_train, ["image"])
