""".pte rungs are judged on the torchao-quantized eager model before any lowering: the estimate must track the
lowered XNNPACK program closely, rejected rungs are not lowered, and a pick whose artifact misses the budget although
its estimate passed falls through to the next rung (the verdict comes from the artifact)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from edgeq.select.evaluation import evaluate_perplexity

# Relative perplexity difference allowed between the eager torchao model and its lowered .pte. Measured on the tiny
# Llama (4 windows of 32 tokens): 8.9e-4 for 8da4w g32 on the peaked copy, 1.2e-3 for 8da8w; XNNPACK's int8 GEMMs
# round and accumulate differently from torchao's dequantize-then-float-matmul, nothing more. 5e-3 leaves ~4x
# margin and is still 4x below what 4-bit quantization itself costs the peaked model (1.9e-2), so the estimate
# cannot turn a clear failure into a pass; a rung near the limit is caught by the artifact re-check.
TORCH_VS_PTE_TOL = 5e-3

PTE8 = "pte-8da8pc-emb8"


@pytest.fixture(scope="module")
def peaked_4bit(peaked: dict[str, Path], tiny_lm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Any]:
    """The peaked tiny Llama, its 8da4w g32 .pte (one real lowering) and 4 calibration windows."""
    pytest.importorskip("executorch")
    from edgeq.llm.config import Variant
    from edgeq.llm.pte_export import build_pte
    from edgeq.llm.source import load_lm
    from edgeq.llm.text import calib_eval_windows

    lm = load_lm(str(peaked["model"]))
    v = Variant("pte", 4, 32, activations="dynamic-int8")
    pte = build_pte(lm.model, lm.tokenizer, tmp_path_factory.mktemp("peaked_pte") / f"{v.name}.pte", v, 64)
    windows, _ = calib_eval_windows(lm.tokenizer, tiny_lm["calib"], tiny_lm["eval"], 32, 4, 1)
    return {"lm": lm, "variant": v, "pte": pte, "windows": windows}


def test_eager_8da4w_tracks_the_lowered_pte(peaked_4bit: dict[str, Any]) -> None:
    from edgeq.llm.metrics import compare, score
    from edgeq.llm.pte_export import quantized_model
    from edgeq.llm.runners import PteLM, TorchLM

    lm, w = peaked_4bit["lm"], peaked_4bit["windows"]
    flt = score(TorchLM(lm.model, 64), w)
    eager = score(TorchLM(quantized_model(lm.model, peaked_4bit["variant"]), 64), w)
    lowered = score(PteLM(peaked_4bit["pte"]), w)
    diff = abs(eager.ppl / lowered.ppl - 1)
    assert diff < TORCH_VS_PTE_TOL, (eager.ppl, lowered.ppl)
    # the estimate's error is well below the quantization error it estimates
    assert diff < abs(lowered.ppl / flt.ppl - 1) / 3, (flt.ppl, eager.ppl, lowered.ppl)
    assert compare(lowered, eager)["top1_agreement"] >= 0.95


def test_manifest_says_how_each_pte_rung_was_judged(tiny_lm_export: Any) -> None:
    """The shared export's 8-bit pick: estimated in torch, then lowered and judged on its artifact."""
    (trial,) = tiny_lm_export.manifest["llm"]["formats"]["pte"]["trials"]
    assert trial["name"] == PTE8 and trial["judged_on"] == "artifact" and trial["passed"]
    assert set(trial["torch_eager_calib"]) == {"ppl", "ppl_ratio", "ppl_ratio_upper", "top1_agreement"}
    assert trial["torch_vs_artifact_ppl_rel_diff"] < TORCH_VS_PTE_TOL
    assert all(t["judged_on"] == "artifact" for t in tiny_lm_export.manifest["llm"]["formats"]["onnx"]["trials"])


def test_lowered_pick_missing_the_budget_falls_through(tiny_lm: dict[str, Path], tiny_lm_export: Any,
                                                       peaked_4bit: dict[str, Any], tmp_path: Path) -> None:
    """The 4-bit rung passes in torch (x0.999) but its 'lowering' goes wrong: the hook hands back a real .pte of
    another model (the peaked copy, x1.2 on these windows), so the artifact misses the 5 % budget and the search
    must fall through to the 8-bit rung. The 8-bit rung's lowering is the shared export's identical program
    (same model, variant and max context), copied rather than rebuilt to keep the test fast."""
    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig, Variant
    from edgeq.llm.measure import Context

    four, eight = Variant("pte", 4, 32, activations="dynamic-int8"), Variant("pte", 8, 0, activations="dynamic-int8")
    assert eight.name == PTE8
    lowered: list[str] = []

    def lower(ctx: Context, v: Variant) -> Path:
        lowered.append(v.name)
        src = peaked_4bit["pte"] if v == four else tiny_lm_export.output / "pte" / f"{PTE8}.pte"
        dest = ctx.work / f"{v.name}.pte"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        return dest

    cfg = LlmConfig(model=str(tiny_lm["model"]), output=tmp_path / "out", calib_text=tiny_lm["calib"],
                    eval_text=tiny_lm["eval"], formats=("pte",), seq_len=32, max_context=64, calib_windows=2,
                    eval_windows=2, greedy_prompts=1, greedy_tokens=4, variants=(four, eight), max_ppl_increase=5.0)
    res = export_llm(cfg, lower=lower)
    pte = res.manifest["llm"]["formats"]["pte"]
    t4, t8 = pte["trials"]
    assert lowered == [four.name, PTE8]
    assert t4["torch_eager_calib"]["ppl_ratio"] <= 1.05 < t4["calib"]["ppl_ratio"]  # estimate passed, artifact not
    assert t4["judged_on"] == "artifact" and not t4["passed"]
    assert t4["torch_vs_artifact_ppl_rel_diff"] > 0.1  # the recorded difference exposes the bad lowering
    assert t8["passed"] and pte["pick"] == PTE8 and pte["met"] and res.passed
    # the ladder judged each rung with the shared evaluator, on the confidence bound of its calibration ratio
    assert [evaluate_perplexity(t["calib"], 1.05, "ppl_ratio_upper").passed for t in (t4, t8)] == [False, True]
    (art,) = res.manifest["artifacts"]  # and the shipped artifact's budget check is its eval-window verdict
    bc = art["validations"][0]["budget_check"]
    ev = evaluate_perplexity(art["validations"][0]["metrics"], 1.05)
    assert (bc["passed"], bc["failures"]) == (ev.passed, list(ev.failures))
    assert [a["name"] for a in res.manifest["artifacts"]] == [PTE8]  # the failed rung is not shipped


@pytest.mark.slow  # one more real lowering (the peaked model at 8 bits)
def test_rung_rejected_in_torch_is_not_lowered(peaked: dict[str, Path], tiny_lm: dict[str, Path],
                                               tmp_path: Path) -> None:
    """A 4-bit rung outside a 0.5 % budget in torch (measured: the peaked model is x1.020 at 4 bits on these 4
    calibration windows; on 2 windows it happens to be x0.997) is never lowered; the 8-bit rung is. Each trial
    records where it was judged."""
    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig, Variant
    from edgeq.llm.measure import Context, build

    four, eight = Variant("pte", 4, 32, activations="dynamic-int8"), Variant("pte", 8, 0, activations="dynamic-int8")
    lowered: list[str] = []

    def lower(ctx: Context, v: Variant) -> Path:
        lowered.append(v.name)
        return build(ctx, v)

    cfg = LlmConfig(model=str(peaked["model"]), output=tmp_path / "out", calib_text=tiny_lm["calib"],
                    eval_text=tiny_lm["eval"], formats=("pte",), seq_len=32, max_context=64, calib_windows=4,
                    eval_windows=2, greedy_prompts=1, greedy_tokens=4, variants=(four, eight), max_ppl_increase=0.5)
    res = export_llm(cfg, lower=lower)
    t4, t8 = res.manifest["llm"]["formats"]["pte"]["trials"]
    assert lowered == [PTE8]
    assert t4["judged_on"] == "torch-eager" and not t4["passed"] and t4["bytes"] is None
    assert t4["calib"]["ppl_ratio"] > 1.005
    assert t8["judged_on"] == "artifact" and t8["torch_vs_artifact_ppl_rel_diff"] < TORCH_VS_PTE_TOL
