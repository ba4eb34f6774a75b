"""The ``.pte`` moves are data: one list, one file per move; the ladders it gives per kind of graph."""

from __future__ import annotations

from edgeq.config import QuantOptions
from edgeq.executorch.quantize import resolve_settings
from edgeq.search.pte_moves import PTE_MOVES, MoveFacts, propose_all
from edgeq.targets import load_target


def _facts(**kw: object) -> MoveFacts:
    base = dict(base=QuantOptions(), top_nodes=("conv_1", "conv_2", "add_3"), linears=(), linear_first=False,
                conv_and_linear=True, first_dynamic=False)
    base.update(kw)
    return MoveFacts(**base)  # type: ignore[arg-type]


def test_conv_net_ladder_hybrid_then_observer_then_float() -> None:
    labels = [label for label, _ in propose_all(_facts())]
    assert labels == ["static convolutions, dynamic per-token linears", "static, min/max activation ranges",
                      "static, top-4 sensitive nodes float", "static, top-16 sensitive nodes float"]


def test_observer_move_flips_the_activation_observer_at_the_same_size() -> None:
    target = load_target("raspberry-pi-5")
    (_, first), = [p for p in propose_all(_facts(conv_and_linear=False)) if "activation ranges" in p[0]]
    assert resolve_settings(QuantOptions(), target).activation_observer == "histogram"
    assert resolve_settings(first, target).activation_observer == "minmax"
    assert not first.nodes_to_exclude and first.mode == "static" and not first.dynamic_linears  # nothing kept float
    (_, back), = [p for p in propose_all(_facts(base=QuantOptions(calibration="minmax"), conv_and_linear=False))
                  if "activation ranges" in p[0]]
    assert resolve_settings(back, target).activation_observer == "histogram"


def test_transformer_and_predicted_dynamic_ladders() -> None:
    lin = _facts(linear_first=True, linears=("l1", "l2"), conv_and_linear=False)
    modes = [(q.mode, q.nodes_to_exclude) for _, q in propose_all(lin)]
    assert modes[0] == ("dynamic", ()) and modes[1:3] == [("dynamic", ("l1",)), ("dynamic", ("l1", "l2"))]
    assert all(m != "static" or ex for m, ex in modes)  # no observer / hybrid move on a transformer
    pred = propose_all(_facts(first_dynamic=True, linears=("l1",)))
    assert [q.nodes_to_exclude for _, q in pred] == [("l1",)]


def test_every_move_is_listed_once_by_name() -> None:
    names = [m.name for m in PTE_MOVES]
    assert len(names) == len(set(names)) and "observer" in names


def test_a_convolution_kept_in_float_takes_its_edges_along() -> None:
    # alone, a conv's INT8 input and output stay (PT2E quantizes an edge when either end is annotated)
    edges = {"conv_1": ("conv_1", "clamp_0", "conv_2"), "conv_2": ("conv_2", "conv_1", "add_3")}
    floats = [(label, q.nodes_to_exclude) for label, q in propose_all(_facts(conv_edges=edges)) if "float" in label]
    assert floats[0] == ("static, top-4 sensitive nodes float (convolutions with their inputs and outputs)",
                         ("conv_1", "clamp_0", "conv_2", "add_3"))  # add_3 is not a convolution: alone
    plain = [q.nodes_to_exclude for label, q in propose_all(_facts()) if "float" in label]
    assert plain[0] == ("conv_1", "conv_2", "add_3")  # no edges known: the nodes alone, as before
