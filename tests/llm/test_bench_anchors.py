"""The LLM anchors benchmark's table (bench/llm_anchors.py): issue #24's decode verdicts per weight width, and a
missing anchor shown as a row saying why. Pure formatting: no model, no timing."""

from __future__ import annotations

from pathlib import Path

from bench.llm_anchors import Entry, table, verdicts


def _entry(label: str, width: str, decode: float) -> Entry:
    return Entry(label, width, "scheme", Path(f"{label}.pte"), stats={"bytes": 100e6, "decode": decode,
                                                                     "prefill": 4 * decode, "ppl_ratio": 1.02,
                                                                     "ppl_ratio_upper": 1.0315,
                                                                     "top1_agreement": 0.9})


def test_the_decode_row_compares_the_pte_with_onnx_and_with_optimum_at_each_width() -> None:
    rows = [_entry("edgeq ONNX", "4-bit", 40.0), _entry("edgeq .pte", "4-bit", 50.0),
            _entry("optimum-executorch .pte", "4-bit", 60.0)]
    got = verdicts(rows)
    assert "4-bit: edgeq .pte decode / edgeq ONNX = 1.25 (want ≥ 1): holds" in got
    assert "4-bit: edgeq .pte decode / optimum-executorch .pte = 0.83 (want ≥ 0.9): does NOT hold" in got
    assert "8-bit: no edgeq .pte measured" in got


def test_a_missing_anchor_is_a_row_with_its_reason_not_a_failure() -> None:
    missing = Entry("llama.cpp", "8-bit", "Q8_0", reason="pip install llama-cpp-python failed (exit 1)")
    md = table([_entry("edgeq .pte", "8-bit", 50.0), missing], 500_000_000, ["a note"]).markdown()
    assert "| edgeq .pte | 8-bit | scheme | 100 | 0.2 | 50 | 200 | 1.0200 (≤ 1.0315) | 90.0 % |" in md
    assert "missing: pip install llama-cpp-python failed (exit 1)" in md
    assert "8-bit: edgeq .pte vs edgeq ONNX: edgeq ONNX not measured" in md
