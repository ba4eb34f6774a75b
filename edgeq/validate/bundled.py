"""``check`` of a ``.bpte`` (ExecuTorch BundledProgram): run the bundled program on its bundled inputs in a forked,
time-limited child and compare with the bundled expected outputs — what a device does before trusting the file.

Two gates, neither taken from the manifest alone:

- the program must reproduce every bundled expected output within the bundle's ``atol`` (recorded at export in
  ``details["bundled"]``, capped here at :data:`ATOL_CAP_OF_SPAN` of the outputs' range, so an edited manifest
  cannot wave a wrong bundle through);
- the outputs must meet the budget's ``min_cosine`` / ``min_sqnr`` against the bundled expectations (the few
  bundled cases are too few for an accuracy or top-1 limit, which the ``.pte`` itself is held to).

A bundle that cannot be loaded is an :class:`ArtifactError`; a hung runtime is killed at the target's
``runner_timeout_s`` (:class:`RunnerError`).
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import numpy as np

from edgeq.config import Budget
from edgeq.errors import ArtifactError
from edgeq.executorch.bundle import ATOL_RANGE_FLOOR, read_bundle, verify_outputs
from edgeq.executorch.runtime import executorch_version, run_pte
from edgeq.jsontypes import get_object_or_none, get_strs
from edgeq.manifest import Artifact, Validation
from edgeq.npz import save_npz
from edgeq.validate.isolated import run_forked
from edgeq.validate.metrics import check_budget, compare
from edgeq.validate.runners.host import host_cpu_name

ATOL_CAP_OF_SPAN = 0.1  # a recorded atol looser than 10 % of the outputs' range is not believed


def _run_cases(path: Path, workdir: Path, out: Path) -> None:
    """In the child: the bundle's program on each bundled input (batched through the same runtime as a .pte)."""
    program, cases = read_bundle(path)
    if not cases:
        raise ArtifactError(f"{path.name}: the bundle holds no test case", "re-run edgeq export")
    pte = workdir / f"{path.stem}.bundled-program.pte"
    pte.write_bytes(program)
    inputs = [np.concatenate([c[0][k] for c in cases]) for k in range(len(cases[0][0]))]
    outputs, _ = run_pte(pte, inputs, warmup=0, repeats=0)
    save_npz(out, {f"o{k}": v for k, v in enumerate(outputs.values())})


def bundle_atol(art: Artifact, expected: list[list[np.ndarray]]) -> tuple[float, float, str]:
    """(rtol, atol, where atol came from): the recorded tolerance, capped by the outputs' range."""
    span = max((float(np.ptp(e)) if e.size else 0.0) for es in expected for e in es)
    cap = max(ATOL_CAP_OF_SPAN * span, 1e-4)
    rec = get_object_or_none(art.details, "bundled") or {}
    atol, rtol = rec.get("atol"), rec.get("rtol", 0.0)
    if not isinstance(atol, (int, float)) or isinstance(atol, bool) or not math.isfinite(atol) or atol < 0:
        return 0.0, max(ATOL_RANGE_FLOOR * span, 1e-4), "no usable atol recorded: 1 % of the outputs' range"
    rtol = float(rtol) if isinstance(rtol, (int, float)) and 0 <= rtol <= 0.1 else 0.0
    if atol > cap:
        return rtol, cap, f"recorded atol {atol:.4g} capped at {ATOL_CAP_OF_SPAN:.0%} of the outputs' range"
    return rtol, float(atol), "recorded at export"


def check_bundle(outdir: Path, art: Artifact, budget: Budget, workdir: Path, timeout: float | None) -> Validation:
    """Run ``art`` (a .bpte) and return its Validation record (host runner, ExecuTorch runtime)."""
    path = outdir / art.path
    out = workdir / f"{path.name}.bundled-outputs.npz"
    run_forked(path.name, "pte", lambda: _run_cases(path, workdir, out),
               workdir / f"{path.name}.bundled.err.json", timeout)
    _, cases = read_bundle(path)
    with np.load(out, allow_pickle=False) as z:
        got = [z[f"o{k}"] for k in range(len(z.files))]
    expected = [c[1] for c in cases]
    shapes = [tuple(e.shape[1:]) for e in expected[0]]
    if [tuple(g.shape[1:]) for g in got] != shapes or any(len(g) != len(cases) for g in got):
        raise ArtifactError(f"{path.name}: the bundled program's outputs {[g.shape for g in got]} do not match the "
                            f"bundled expected outputs ({len(cases)} cases of {shapes})",
                            "the bundle was tampered with or mixes two models; re-run edgeq export")
    per_case = [[np.asarray(g[i:i + 1]) for g in got] for i in range(len(cases))]
    rtol, atol, atol_source = bundle_atol(art, expected)
    res = verify_outputs(path, per_case, rtol, atol)
    reference = {f"output_{k}": np.concatenate([es[k] for es in expected]) for k in range(len(expected[0]))}
    metrics = compare(reference, {f"output_{k}": g for k, g in enumerate(got)}, None)
    bc = check_budget(metrics, Budget(min_cosine=budget.min_cosine, min_sqnr=budget.min_sqnr)).to_dict()
    failures = [f"bundled {f}" for f in res.failures[:3]] + get_strs(bc, "failures")
    bc.update(passed=not failures, failures=failures,
              bundled={"cases": res.cases, "rtol": rtol, "atol": atol, "atol_source": atol_source,
                       "max_abs_diff": res.max_abs_diff})
    return Validation(runner="host", machine=platform.machine(), cpu_model=host_cpu_name(), features=[],
                      emulated=False, metrics=json.loads(json.dumps(metrics.to_dict())), budget_check=bc,
                      latency_ms=None, latency_kind="none", runtime=f"executorch {executorch_version()} (bundled)")
