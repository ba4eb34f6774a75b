"""``check``: re-validate an output folder from its manifest — the CI gate.

Re-hashes every artifact and the validation data, re-runs each validated artifact on the requested runners
(default: the ones recorded at export), compares with the stored float reference and applies the budget
(the manifest's, overridden by any budget given here). Nothing in the folder is modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.config import Budget
from edgeq.errors import TargetError
from edgeq.manifest import Artifact, read_manifest, verify_hashes
from edgeq.progress import Progress
from edgeq.targets import load_target
from edgeq.validate.orchestrate import validate_artifacts, verdict


@dataclass
class CheckResult:
    output: Path
    passed: bool
    failures: list[str]
    artifacts: list[Artifact]
    budget: Budget
    manifest: dict[str, Any]
    host_passes_arm_fails: list[str]


def check(outdir: str | Path, budget: Budget | None = None, runners: tuple[str, ...] | None = None,
          progress: Progress | None = None) -> CheckResult:
    progress = progress or Progress(enabled=False)
    out = Path(outdir)
    m = read_manifest(out)
    verify_hashes(m, out)
    stored = Budget(**m["budget"])
    eff = (budget or Budget()).merged_over(stored)
    target = target_for(m)
    specs = runners or tuple(m["config"].get("validate_on") or ("host",))
    arts = [Artifact.from_dict(a) for a in m["artifacts"]]
    for a in arts:
        a.validations = []
    vd = m["validation_data"]
    validate_artifacts(out, arts, vd["inputs"]["path"], vd["reference"]["path"], specs, target, eff, progress)
    # Passes that gate (budget-check) are static facts of the files; keep their recorded failures.
    v = verdict(arts, m["passes"])
    return CheckResult(out, v["passed"], v["failures"], arts, eff, m, v["host_passes_arm_fails"])


def target_for(m: dict[str, Any]) -> Any:
    t = m["target"]
    try:
        return load_target(t["path"] if t.get("path", "").endswith(".toml") and Path(t["path"]).is_file() else t["name"])
    except TargetError:
        return load_target(t["name"])
