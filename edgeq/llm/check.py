"""``edgeq check`` on a text-generation folder: re-measure perplexity from the folder's own files.

What is re-run: every runnable artifact (format from its bytes, never the manifest's word) scores the stored eval
windows (``validation/inputs.npz``) in a forked child, so a runtime crash on a hostile file is a typed error. Its
perplexity is divided by the float perplexity of the stored per-token NLL (``validation/reference.npz``) and gated
on ``--max-ppl-increase`` (the command line over the budget recorded at export).

What the stored float NLL is: a claim. The float model is not shipped (it is the thing being replaced: 538 MB for
a 135M model), so without it ``check`` cannot recompute float perplexity. Two defences, both from the files and
the command line:

- the reference floor: a quantized variant is not meaningfully better than float on the same tokens, so a shipped
  artifact whose perplexity is below ``REFERENCE_FLOOR`` x the stored float perplexity means the reference was
  inflated or is not this model's. This bounds what an edited reference can hide to the gap between float and
  the best shipped artifact (the 8-bit one, ~1 % on SmolLM2-135M).
- ``--float-model MODEL`` (HF folder / .gguf / factory, given on the command line): float NLL is recomputed on the
  stored windows and must equal the stored one; the recomputed value is then the one the gate uses.

The eval windows themselves are token ids; check verifies they are in the vocabulary, not that they came from a
given text (pass ``--float-model`` and compare texts yourself if that matters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import ManifestError, UsageError
from edgeq.integrity import confined
from edgeq.jsontypes import JSONObject, as_object, get_object, get_object_or_none, number_or_none
from edgeq.llm.metrics import WindowScores, compare, score
from edgeq.llm.runners import TorchLM, open_runner
from edgeq.llm.source import load_lm
from edgeq.select.evaluation import evaluate_perplexity
from edgeq.select.verdict import ArtifactCheck, verdict
from edgeq.validate.isolated import run_forked

if TYPE_CHECKING:
    from edgeq.manifest import Artifact

# Quantized perplexity below this fraction of the stored float perplexity fails the reference (see above).
# Measured: 4- and 8-bit variants of SmolLM2-135M and of the tiny random test Llama stay >= 0.995x float.
REFERENCE_FLOOR = 0.98
# A float model given with --float-model must reproduce the stored float perplexity this closely (fp32 torch
# reruns of the same windows agree to ~1e-6; the slack covers a different BLAS / thread count).
FLOAT_RTOL = 1e-3


@dataclass(frozen=True)
class LmArtifactCheck:
    name: str
    format: str
    metrics: dict[str, float]
    passed: bool
    failures: tuple[str, ...]


@dataclass(frozen=True)
class LmCheck:
    max_ppl_increase_pct: float
    budget_source: str  # "command line" | "manifest"
    float_ppl: float
    float_source: str  # "stored reference" | "recomputed from MODEL"
    artifacts: tuple[LmArtifactCheck, ...]
    failures: tuple[str, ...]
    findings: tuple[str, ...]


def is_text_generation(m: JSONObject, out: Path) -> bool:
    """The folder is an LM export when its reference file holds per-token NLL; the manifest's task must agree."""
    ref = get_object_or_none(get_object_or_none(m, "validation_data") or {}, "reference") or {}

    path = confined(out, ref.get("path"), "validation_data.reference")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
    except (OSError, ValueError):
        files = set()
    task = (get_object_or_none(m, "signature") or {}).get("task")
    says = task == "text-generation"
    lm = {"nll", "argmax"} <= files
    if says != lm:
        raise ManifestError(f"the manifest says task {task!r} but "
                            f"{ref.get('path')} {'holds' if lm else 'does not hold'} per-token NLL",
                            "the folder was edited; re-run edgeq export")
    return lm


def _budget(m: JSONObject, cli: float | None) -> tuple[float, str, list[str]]:
    raw = (get_object_or_none(m, "budget") or {}).get("max_ppl_increase_pct")
    stored = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    if cli is not None:
        if not 0 <= cli < 1e6:
            raise UsageError(f"--max-ppl-increase must be >= 0 (a percentage), got {cli}", "e.g. 10")
        notes = [] if stored == cli else [f"perplexity budget: {cli} % from the command line "
                                          f"(the manifest recorded {stored})"]
        return cli, "command line", notes
    if stored is None or not 0 <= stored < 1e6:
        raise ManifestError(f"edgeq.json: budget.max_ppl_increase_pct is {raw!r}",
                            "pass --max-ppl-increase PCT to check against a budget you choose")
    return stored, "manifest", [f"perplexity budget: {stored} % as recorded at export (pass --max-ppl-increase "
                                f"to choose it)"]


def _load_windows(out: Path, m: JSONObject) -> tuple[np.ndarray, WindowScores]:
    vd = get_object(m, "validation_data")
    try:
        inputs, reference = get_object(vd, "inputs")["path"], get_object(vd, "reference")["path"]
        with np.load(confined(out, inputs, "validation_data.inputs"), allow_pickle=False) as z:
            wins = np.asarray(z["eval_windows"])
        with np.load(confined(out, reference, "validation_data.reference"), allow_pickle=False) as z:
            ref = WindowScores(np.asarray(z["nll"], dtype=np.float64), np.asarray(z["argmax"]))
    except (KeyError, OSError, ValueError) as e:
        raise ManifestError(f"the validation files are not an LM export's ({e})", "re-run edgeq export") from e
    n, t = wins.shape if wins.ndim == 2 else (0, 0)
    if (wins.ndim != 2 or n == 0 or t < 2 or wins.dtype.kind not in "iu" or ref.nll.shape != (n, t - 1)
            or ref.argmax.shape != (n, t - 1) or not np.isfinite(ref.nll).all() or (ref.nll < 0).any()):
        raise ManifestError(f"validation files: windows {wins.shape} {wins.dtype}, reference NLL {ref.nll.shape} "
                            "do not fit together", "re-run edgeq export")
    return wins.astype(np.int64), ref


def score_isolated(path: Path, fmt: str, windows: np.ndarray, workdir: Path) -> WindowScores:
    """Score WINDOWS with the artifact in a forked child: a native crash becomes an ArtifactError."""
    res = workdir / f"{path.name}.{fmt}.npz"
    res.unlink(missing_ok=True)

    def work() -> None:
        runner = open_runner(path, fmt)
        vocab = runner.forward(windows[0][:1], 0).shape[-1]
        if int(windows.max()) >= vocab or int(windows.min()) < 0:
            raise ManifestError(f"the eval windows hold token ids outside the model's vocabulary ({vocab})",
                                "validation/inputs.npz is not this model's; re-run edgeq export")
        s = score(runner, windows)
        np.savez(res, nll=s.nll, argmax=s.argmax)

    run_forked(path.name, fmt, work, workdir / f"{path.name}.{fmt}.err.json")
    with np.load(res, allow_pickle=False) as z:
        return WindowScores(np.asarray(z["nll"]), np.asarray(z["argmax"]))


def _float_scores(model: str, windows: np.ndarray) -> WindowScores:
    lm = load_lm(model)
    return score(TorchLM(lm.model, int(windows.shape[1]) + 1), windows)


def check_lm(m: JSONObject, out: Path, arts: list[Artifact], max_ppl_increase: float | None,
             float_model: str | None, workdir: Path) -> LmCheck:
    """Re-measure every runnable artifact of an LM folder; ARTS carry the formats recomputed from the bytes."""
    pct, source, findings = _budget(m, max_ppl_increase)
    windows, ref = _load_windows(out, m)
    # Artifacts first, each in a fork of this process: forking after torch ran the float model (thread pools up)
    # could hang the child's OpenMP.
    runnable = [a for a in arts if a.format in ("onnx", "pte")]
    scores = [score_isolated(out / a.path if a.format == "pte" else (out / a.path).parent, a.format, windows, workdir)
              for a in runnable]
    unmet: list[str] = []  # a replaced float reference fails the check before any artifact does
    float_source = "stored reference"
    if float_model is not None:
        got = _float_scores(float_model, windows)
        rel = abs(got.ppl / ref.ppl - 1)
        if rel > FLOAT_RTOL:
            unmet.append(f"the stored float reference (PPL {ref.ppl:.4f}) is not {float_model}'s on the stored "
                         f"windows (PPL {got.ppl:.4f}, {rel:.2%} apart): reference or model replaced")
        ref, float_source = got, f"recomputed from {float_model}"
    else:
        findings.append("float perplexity comes from the stored reference (the float model is not in the folder); "
                        f"it is held to >= {REFERENCE_FLOOR} x every shipped artifact's, pass --float-model to "
                        "recompute it")
    claimed = (get_object_or_none(get_object_or_none(m, "llm") or {}, "float") or {}).get("ppl_eval")
    if isinstance(claimed, (int, float)) and abs(float(claimed) / ref.ppl - 1) > 1e-3:
        findings.append(f"the manifest claims float PPL {claimed}, the reference gives {ref.ppl:.4f}")
    limit = 1 + pct / 100
    results, checks = [], []
    for a, got_a in zip(runnable, scores, strict=True):
        met = compare(ref, got_a)
        ev = evaluate_perplexity(met, limit)
        fails = [f"{f} (budget {pct:g} %)" for f in ev.failures]
        floor = []
        if met["ppl_ratio"] < REFERENCE_FLOOR and float_model is None:
            floor.append(f"perplexity x{met['ppl_ratio']:.4f} of the stored float reference is below "
                         f"x{REFERENCE_FLOOR}: a quantized model does not beat float by that much, so the "
                         "reference is not this model's (inflated or replaced)")
        old = next((get_object_or_none(v, "metrics") or {} for v in _validations(m, a.name)), {})
        old_ratio = number_or_none(old.get("ppl_ratio"))
        if old_ratio is not None and abs(old_ratio - met["ppl_ratio"]) > 1e-3:
            findings.append(f"{a.name}: the manifest claims PPL x{old['ppl_ratio']}, re-measured x{met['ppl_ratio']}")
        checks.append(ArtifactCheck(a.name, ev.passed, (*floor, *fails)))
        results.append(LmArtifactCheck(a.name, a.format, met, ev.passed, tuple(fails)))
    outcome = verdict(checks, before=unmet, none_checked="no runnable .onnx or .pte language model in the folder")
    return LmCheck(pct, source, ref.ppl, float_source, tuple(results), outcome.failures, tuple(findings))


def _validations(m: JSONObject, name: str) -> list[JSONObject]:
    arts = m.get("artifacts")
    for a in arts if isinstance(arts, list | tuple) else []:
        if isinstance(a, dict) and a.get("name") == name:
            vals = a.get("validations")
            return [as_object(v) for v in (vals if isinstance(vals, list | tuple) else []) if isinstance(v, dict)]
    return []
