"""Accuracy-aware quantization on a trained BERT-style encoder: patterns, sensitivity, search, bad budgets, sweep.

The encoder (``edgeq.zoo.text:text_encoder``) is trained on the Python reference docs at first use; plain
static QDQ quantization collapses it (mean cosine ≈ 0.93 to float) and the search must find a static INT8 model
inside a 0.99 cosine budget. The target profile is written here as data: x86-64's U8S8 scheme with only the core
``quant-scheme`` pass and an empty default budget (the budget comes from the test's flags).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edgeq.config import Budget, QuantOptions, SearchOptions
from edgeq.errors import UsageError
from edgeq.manifest import Artifact

ENCODER = "edgeq.zoo.text:text_encoder"
TARGET_TOML = """
name = "x86-64-test"
description = "x86-64 host, U8S8 + reduce_range, per-channel, minmax (the x86-64 profile's scheme)"
os = "linux"
abi = "linux-x86_64"
ram_mb = 8192
storage_mb = 65536
passes = ["quant-scheme"]

[cpu]
arch = "x86_64"
name = "generic x86-64"
isa = "x86-64-v2"
qemu_model = ""
features = ["avx2"]
cores = 2

[formats.onnx]
activation_type = "uint8"
weight_type = "int8"
per_channel = true
reduce_range = true
calibration = "minmax"
execution_providers = ["CPU"]
reason = "x86-64 without VNNI: U8S8 + reduce_range"

[formats.executorch]
partitioner = "xnnpack"

[validation]
"""


def edgeq_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeq.cli", "-q", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="session")
def target_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("target") / "x86-64-test.toml"
    p.write_text(TARGET_TOML)
    return p


@pytest.fixture(scope="session")
def text_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from edgeq.zoo.text import write_text_data

    return write_text_data(tmp_path_factory.mktemp("text"), n_calib=64, n_eval=128)


@pytest.fixture(scope="session")
def searched(tmp_path_factory: pytest.TempPathFactory, text_files, target_file):  # type: ignore[no-untyped-def]
    """One export with a budget plain quantization misses (search runs automatically)."""
    import edgeq

    calib, ev = text_files
    out = tmp_path_factory.mktemp("search") / "enc"
    # outliers off: these tests pin the static QDQ ladder (tests/test_outlier_export.py covers the prepared path)
    return edgeq.export(ENCODER, calib=str(calib), eval=str(ev), output=out, target=str(target_file),
                        budget=Budget(min_cosine=0.99), search=SearchOptions(max_trials=10, max_seconds=1e9), outliers="off")


@pytest.fixture(scope="session")
def plain(tmp_path_factory: pytest.TempPathFactory, searched):  # type: ignore[no-untyped-def]
    """(pre-processed float model, plain static QDQ model, calibration data) for the sensitivity tests."""
    from edgeq.data import load_dataset
    from edgeq.onnx.export import preprocess
    from edgeq.onnx.quantize import quantize_onnx_static

    d = tmp_path_factory.mktemp("plain")
    prepped, _ = preprocess(searched.output / "model.fp32.onnx", d / "prep.onnx")
    calib = load_dataset(searched.manifest["config"]["calib"])
    q = QuantOptions(calibration="minmax", per_channel=True, activation_type="uint8", weight_type="int8",
                     reduce_range=True)
    quantize_onnx_static(prepped, d / "plain.onnx", calib, q)
    return prepped, d / "plain.onnx", calib


def test_search_meets_a_budget_plain_quantization_misses(searched) -> None:  # type: ignore[no-untyped-def]
    m = searched.manifest
    s = m["search"]
    first = s["trials"][0]
    # the first trial is plain quantize_static with the target's scheme: it misses the budget on the trained model
    assert first["stage"] == "baseline" and not first["passed"]
    assert first["metrics"]["cosine_mean"] < 0.99
    assert first["nodes_excluded"] == [] and first["int16_activation_nodes"] == []
    assert first["reused_first_model"]  # the export's first model, not quantized a second time
    # the search finds a static INT8 model inside it, and that model is what ships and what was validated
    assert s["met"] and searched.passed
    art = searched.artifact("onnx-int8-static")
    assert art.quantization["search"]["trial"] == s["best"] and art.quantization["search"]["met"]
    assert art.quantization["nodes_excluded"] or art.quantization["int16_activation_nodes"]
    cos = art.validations[0].metrics["cosine_mean"]
    assert cos >= 0.99 and cos > first["metrics"]["cosine_mean"] + 0.03
    fp32 = searched.artifact("onnx-fp32")
    assert art.bytes < 0.5 * fp32.bytes  # still INT8-sized
    assert art.details["op_counts"].get("QuantizeLinear", 0) > 10
    # every trial is logged with its configuration, metrics, bytes and host latency
    for t in s["trials"]:
        assert {"label", "config", "bytes", "latency_ms", "metrics", "passed", "stage"} <= set(t)
        assert t["bytes"] > 0 and t["latency_ms"] > 0
    assert len(s["trials"]) <= 10
    # sensitivity of the plain model is in the manifest; the report shows both sections with charts
    assert m["sensitivity"] and m["sensitivity"][0]["rank"] == 1
    html = (searched.output / "report.html").read_text()
    assert "Accuracy-aware search" in html and "Per-node sensitivity" in html and html.count("<svg") >= 2
    json.dumps(m)  # the manifest stays plain JSON


def test_every_trial_is_scored_by_the_shared_evaluator(searched) -> None:  # type: ignore[no-untyped-def]
    """The ONNX search scores its trials with :func:`edgeq.select.evaluation.evaluate_tensor`: each recorded
    trial's failures, distance and shortfall are what that function gives for its metrics, the export's budget and
    the default size cap (to the float model's bytes)."""
    from edgeq.search.search import DEFAULT_MAX_SIZE_RATIO
    from edgeq.select.evaluation import evaluate_tensor
    from edgeq.validate.metrics import Metrics

    trials = [t for t in searched.manifest["search"]["trials"] if t["metrics"] is not None]
    assert any(not t["passed"] for t in trials) and any(t["passed"] for t in trials)
    float_bytes = searched.artifact("onnx-fp32").bytes
    for t in trials:
        ev = evaluate_tensor(Metrics.from_dict(t["metrics"]), Budget.from_dict(searched.manifest["budget"]),
                             t["bytes"] / float_bytes, DEFAULT_MAX_SIZE_RATIO)
        assert (t["passed"], t["failures"], t["distance"]) == (ev.passed, list(ev.failures), dict(ev.distance))
        assert t["shortfall"] == pytest.approx(ev.shortfall)


def test_fragile_patterns_found_by_structure(plain) -> None:  # type: ignore[no-untyped-def]
    import onnx

    from edgeq.search.patterns import fragile_nodes

    prepped, _, _ = plain
    p = fragile_nodes(prepped)
    ops = {n.name: n.op_type for n in onnx.load(str(prepped)).graph.node}
    assert [ops[n] for n in p["softmax"]] == ["Softmax", "Softmax"]  # 2 attention layers
    assert {ops[n] for n in p["layernorm"]} == {"LayerNormalization"} and len(p["layernorm"]) == 5
    assert sum(ops[n] == "Erf" for n in p["gelu"]) == 2
    assert len(p["residual_add"]) == 4 and {ops[n] for n in p["residual_add"]} == {"Add"}
    # mask arithmetic: the Cast/Sub/Mul on attention_mask and the Adds that inject it into the scores
    mask_ops = [ops[n] for n in p["mask_arithmetic"]]
    assert "Cast" in mask_ops and "Sub" in mask_ops and mask_ops.count("Add") == 2
    assert not set(p["mask_arithmetic"]) & set(p["residual_add"])


def test_fragile_patterns_absent_in_a_cnn(tmp_path: Path, digits_export) -> None:  # type: ignore[no-untyped-def]
    from edgeq.search.patterns import fragile_nodes

    p = fragile_nodes(digits_export.output / "model.fp32.onnx")
    assert all(not v for v in p.values()), p


def test_sensitivity_ranking_points_at_the_right_nodes(plain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edgeq.onnx.quantize import quantize_onnx_static
    from edgeq.search.patterns import Neighbourhood
    from edgeq.search.sensitivity import onnx_sensitivity
    from edgeq.validate.metrics import sqnr_db

    prepped, qdq, calib = plain
    ranking = onnx_sensitivity(prepped, qdq, calib, max_samples=8)
    assert len(ranking) > 20
    assert [r.added_nsr for r in ranking] == sorted((r.added_nsr for r in ranking), reverse=True)
    assert "Softmax" in {r.op_type for r in ranking[:3]}  # the attention softmax behind the -1e4 mask
    # weight SQNRs are real (ORT's own helper reports -22 dB for the uint8 embedding table; ours must not)
    weights = [r.weight_sqnr_db for r in ranking if r.weight_sqnr_db is not None]
    assert weights and min(weights) > 20

    # keeping the top-ranked tensor in float helps far more than keeping the lowest-ranked one in float
    import onnxruntime as ort

    hood = Neighbourhood(prepped)
    feeds = calib.head(32).inputs
    ref = ort.InferenceSession(str(prepped)).run(None, dict(feeds))[0]

    def sqnr_without(nodes, name: str) -> float:  # type: ignore[no-untyped-def]
        q = QuantOptions(calibration="minmax", per_channel=True, activation_type="uint8", weight_type="int8",
                         reduce_range=True, nodes_to_exclude=tuple(n for s in nodes for n in hood.island(s.node)))
        out = tmp_path / f"{name}.onnx"
        quantize_onnx_static(prepped, out, calib.head(32), q)
        return sqnr_db(ref, ort.InferenceSession(str(out)).run(None, dict(feeds))[0])

    plain_db = sqnr_db(ref, ort.InferenceSession(str(qdq)).run(None, dict(feeds))[0])
    top, bottom = sqnr_without(ranking[:2], "top"), sqnr_without(ranking[-2:], "bottom")
    assert top > plain_db + 10 and top > bottom + 10 and abs(bottom - plain_db) < 1


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_unreachable_budget_ends_with_best_found_and_exit_1(tmp_path: Path, text_files, target_file) -> None:  # type: ignore[no-untyped-def]
    calib, ev = text_files
    out = tmp_path / "out"
    r = edgeq_cli("export", ENCODER, "--calib", str(calib), "--eval", str(ev), "--target", str(target_file),
                  "-o", str(out), "--min-sqnr", "80", "--search-trials", "3", "--search-time", "1e9", "--outliers", "off")
    assert r.returncode == 1, r.stderr
    assert "verdict: FAIL" in r.stdout and "SQNR" in r.stdout
    # the CLI prints the selection's own summary (edgeq.select.summary.Selection.line): budget missed, what shipped
    assert "search (onnx): budget not met after 3 trials" in r.stdout and "closest trials" in r.stdout
    assert "shipped the first INT8 model (onnx-int8-static), whose verdict fails" in r.stdout
    m = json.loads((out / "edgeq.json").read_text())
    s = m["search"]
    assert not s["met"] and len(s["trials"]) == 3 and s["stopped"] == "trial limit (3) reached"
    assert 1 <= len(s["closest"]) <= 3 and s["best"] in s["closest"]
    best = next(t for t in s["trials"] if t["index"] == s["best"])
    assert best["shortfall"] == min(t["shortfall"] for t in s["trials"])
    art = next(a for a in m["artifacts"] if a["name"] == "onnx-int8-static")
    # a rejected candidate never ships: the first model stays, the closest trials are named
    assert art["quantization"]["search"] == {"trial": None, "met": False,
                                             "shipped": "first model (no trial met the budget)",
                                             "closest": s["closest"]}
    assert art["validations"] and not all(v["budget_check"]["passed"] for v in art["validations"])
    assert "budget not met" in (out / "report.html").read_text()


def test_search_time_limit_bounds_the_search(plain, searched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edgeq.search.evaluate import EvalData
    from edgeq.search.search import LadderStart, search_onnx
    from edgeq.validate.orchestrate import load_npz

    prepped, _, calib = plain
    out = searched.output
    q = QuantOptions(calibration="minmax", per_channel=True, activation_type="uint8", weight_type="int8",
                     reduce_range=True)
    data = EvalData(prepped, calib, out / "validation/inputs.npz", load_npz(out / "validation/reference.npz"))
    res = search_onnx(data, LadderStart(q), Budget(min_sqnr=80), SearchOptions(max_seconds=0.01), tmp_path)
    assert len(res.trials) == 1 and res.stopped.startswith("safety time cap") and res.time_capped and not res.met
    assert res.best is res.trials[0] and res.closest() == [res.trials[0]]


def test_baseline_trial_measures_the_seed_instead_of_requantizing(plain, searched, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The export hands the search its first model (built with the baseline settings): trial 1 is that file,
    measured, with its bias-correction record, not a second quantization of the same settings."""
    import filecmp

    from edgeq.search.evaluate import EvalData
    from edgeq.search.search import LadderStart, search_onnx
    from edgeq.validate.orchestrate import load_npz

    prepped, plain_model, calib = plain
    out = searched.output
    q = QuantOptions(calibration="minmax", per_channel=True, activation_type="uint8", weight_type="int8",
                     reduce_range=True)
    record = {"convs": 0, "method": "seeded"}
    data = EvalData(prepped, calib, out / "validation/inputs.npz", load_npz(out / "validation/reference.npz"))
    res = search_onnx(data, LadderStart(q, seed=(plain_model, record)), Budget(min_sqnr=80),
                      SearchOptions(max_seconds=0.01), tmp_path)
    first = res.trials[0]
    assert first.stage == "baseline" and first.path is not None and first.metrics is not None
    assert filecmp.cmp(first.path, plain_model, shallow=False) and first.bytes == plain_model.stat().st_size
    assert first.bias_correction == record and first.to_dict()["reused_first_model"]


@pytest.mark.parametrize("flags, message", [
    (["--min-sqnr", "60", "--max-size-ratio", "0.3"], "contradicts --max-size-ratio"),
    (["--min-cosine", "1", "--max-size-ratio", "0.4"], "contradicts --max-size-ratio"),
    (["--max-size-ratio", "0.1"], "below 0.25"),
    (["--min-cosine", "0.99", "--search-trials", "0"], "--search-trials must be >= 1"),
    (["--min-cosine", "0.99", "--search-time", "-5"], "--search-time must be a positive"),
])
def test_contradictory_or_bad_search_options_are_usage_errors(tmp_path: Path, flags, message, text_files,  # type: ignore[no-untyped-def]
                                                              target_file) -> None:
    calib, ev = text_files
    out = tmp_path / "out"
    r = edgeq_cli("export", ENCODER, "--calib", str(calib), "--eval", str(ev), "--target", str(target_file),
                  "-o", str(out), *flags)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "hint:" in r.stderr or message in r.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_contradiction_rules_in_python() -> None:
    from edgeq.search.search import INT8_SQNR_CEILING_DB, check_budget_consistency

    assert 49 < INT8_SQNR_CEILING_DB < 51
    check_budget_consistency(Budget(min_sqnr=45), SearchOptions(max_size_ratio=0.3))  # reachable in principle
    check_budget_consistency(Budget(min_sqnr=60), SearchOptions(max_size_ratio=0.9))  # mostly-float may reach it
    with pytest.raises(UsageError, match="contradicts"):
        check_budget_consistency(Budget(min_sqnr=60), SearchOptions(max_size_ratio=0.5))
    with pytest.raises(UsageError):
        SearchOptions(mode="sometimes")  # type: ignore[arg-type]


def test_when_the_search_runs(searched) -> None:  # type: ignore[no-untyped-def]
    from edgeq.config import PipelineConfig
    from edgeq.search.integrate import should_search

    def first_model_check(check: dict[str, object]) -> list[Artifact]:
        """The export's artifacts with the first INT8 model's host verdict replaced (validations are frozen)."""
        return [replace(a, validations=(replace(a.validations[0], budget_check=check), *a.validations[1:]))
                if a.name == "onnx-int8-static" else a for a in searched.artifacts]

    arts = first_model_check({"passed": False, "failures": ["x"]})  # as the first, plain model did

    def cfg(mode: str, budget: Budget) -> PipelineConfig:
        return PipelineConfig(model="m", calib="c", output=Path("o"), budget=budget,
                              search=replace(SearchOptions(), mode=mode))  # type: ignore[arg-type]

    flags = Budget(min_cosine=0.99)
    assert should_search(cfg("auto", flags), flags, arts)
    assert not should_search(cfg("off", flags), flags, arts)
    # a budget that comes only from the target profile searches too when the first model misses it
    assert should_search(cfg("auto", Budget()), flags, arts)
    assert should_search(cfg("always", Budget()), flags, arts)
    assert not should_search(cfg("always", Budget()), Budget(), arts)  # nothing to search for
    arts = first_model_check({"passed": True, "failures": []})
    assert not should_search(cfg("auto", flags), flags, arts)  # the first model already meets it


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_decoder_goes_through_search_and_validation(tmp_path: Path, target_file) -> None:  # type: ignore[no-untyped-def]
    """The GPT-style causal LM: plain INT8 misses a 25 dB SQNR budget (the causal mask's -1e4 constant ruins
    the scores' INT8 range); the search keeps the Softmax and its mask Add in float and meets it."""
    import edgeq
    from edgeq.zoo.text import write_text_data

    calib, ev = write_text_data(tmp_path / "data", model="decoder", n_calib=48, n_eval=64)
    res = edgeq.export("edgeq.zoo.text:text_decoder", calib=str(calib), eval=str(ev), output=tmp_path / "o",
                       target=str(target_file), budget=Budget(min_sqnr=25), search=SearchOptions(max_trials=8, max_seconds=1e9),
                       outliers="off")
    s = res.manifest["search"]
    assert s["trials"][0]["metrics"]["sqnr_db"] < 25 and s["met"] and res.passed
    art = res.artifact("onnx-int8-static")
    assert art.validations[0].metrics["sqnr_db"] >= 25
    assert art.bytes < 0.5 * res.artifact("onnx-fp32").bytes
    assert res.manifest["signature"]["outputs"][0]["shape"][1:] == [32, 1024]


def test_the_shipped_trial_records_the_recipe_that_rebuilds_it(searched, plain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The winner's ``quantization.recipe`` is the trial's, and building it gives the shipped bytes."""
    from edgeq.backends.onnx import rename_outputs
    from edgeq.hashing import sha256_file
    from edgeq.onnx.build import build_onnx_recipe
    from edgeq.recipe import Recipe

    s = searched.manifest["search"]
    best = next(t for t in s["trials"] if t["index"] == s["best"])
    art = searched.artifact("onnx-int8-static")
    recipe = Recipe.from_dict(art.quantization["recipe"])
    assert recipe.nodes("float") == tuple(best["nodes_excluded"]) and recipe.nodes("float16") == ()
    assert recipe.nodes("int16-activations") == tuple(best["int16_activation_nodes"])
    assert recipe.activations.calibration == best["config"]["calibration"]
    prepped, _, calib = plain
    out = tmp_path / "again.onnx"
    build_onnx_recipe(prepped, out, calib, recipe)
    rename_outputs(out, [o["name"] for o in searched.manifest["signature"]["outputs"]])
    assert sha256_file(out) == art.sha256
