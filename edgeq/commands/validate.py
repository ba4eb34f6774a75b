"""``edgeq validate OUTDIR --on RUNNER``: re-validate an export folder on a runner and record it in the folder.

Unlike ``edgeq check`` (which never writes), this adds the runner's results to ``edgeq.json`` and the reports —
replacing earlier results of the same runner and CPU — and recomputes the verdict, so host and ARM results sit
side by side. The folder is updated atomically: a hard-linked copy is rewritten and renamed into place, so an
error or Ctrl-C leaves the original untouched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from edgeq.commands.common import (
    add_budget_flags,
    add_fleet_flags,
    add_runner_timeout_flag,
    budget_from,
    fleet_from,
    progress_from,
)
from edgeq.config import Budget, FleetOptions
from edgeq.console import emit_json, human
from edgeq.errors import UsageError
from edgeq.integrity import audit, seal
from edgeq.jsontypes import JSONObject, get_object, get_strs
from edgeq.manifest import MANIFEST_NAME, Artifact, Manifest, read_manifest, write_manifest
from edgeq.outdir import commit_output
from edgeq.progress import Progress
from edgeq.report import write_reports
from edgeq.report.markdown import terminal_summary
from edgeq.report.terminal import json_result
from edgeq.targets import target_for, with_runner_timeout
from edgeq.validate.fleet_run import split_runners
from edgeq.validate.metrics import Metrics, check_budget
from edgeq.validate.orchestrate import ValidationRequest, exit_code, validate_artifacts, verdict
from edgeq.validate.runners import get_runner


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="re-validate an export folder on a runner (emulator, ssh://...) and record it",
                       description="Run the artifacts of OUTDIR on the given runner(s) — the host, the ARM emulator "
                                   "with the target's CPU model, or a real board over SSH — compare with the stored "
                                   "float reference and record the results in OUTDIR/edgeq.json and the reports. "
                                   "Exit 0 on pass, 1 when the budget is exceeded, 2 on bad input, 3 on a runner "
                                   "or device failure (or fewer boards answered than --min-boards).")
    p.add_argument("outdir", type=Path, metavar="OUTDIR")
    p.add_argument("--on", required=True, metavar="RUNNER[,RUNNER]",
                   help="host, emulator, ssh://user@host[:port][/workdir] or fleet:SELECTOR (comma-separated)")
    add_budget_flags(p)
    add_runner_timeout_flag(p)
    add_fleet_flags(p)
    p.set_defaults(func=run)


@dataclass
class ValidateResult:
    output: Path
    manifest: JSONObject

    @property
    def passed(self) -> bool:
        return bool(get_object(self.manifest, "verdict")["passed"])


def validate(outdir: str | Path, runners: tuple[str, ...], budget: Budget | None = None,
             progress: Progress | None = None, runner_timeout: float | None = None,
             fleet: FleetOptions | None = None) -> ValidateResult:
    """Python API of ``edgeq validate``. ``fleet``: how SSH boards run together (edgeq.validate.fleet_run)."""
    progress = progress or Progress(enabled=False)
    out = Path(outdir)
    if not runners:
        raise UsageError("no runner given", "use --on emulator, --on host or --on ssh://user@host")
    m = read_manifest(out)
    audit(m, out)  # confine and re-hash every file before trusting the folder
    eff = (budget or Budget()).merged_over(Budget.from_dict(m.budget))
    target = with_runner_timeout(target_for(m.target.name), runner_timeout)
    local, boards = split_runners(runners, target, fleet or FleetOptions())
    for spec in local:
        runner = get_runner(spec, target)  # usable? (typed error before any work)
        getattr(runner, "preflight", lambda: None)()
    if boards is not None:
        boards.preflight(progress)
    arts = m.artifact_list()
    fresh = [Artifact.from_dict({**a.to_dict(), "validations": []}) for a in arts]
    inputs, reference = m.validation_data.inputs.path, m.validation_data.reference.path
    validate_artifacts(ValidationRequest(out, inputs, reference, local, target, eff, fleet=boards), fresh, progress)
    if boards is not None:
        m = replace(m, fleet=boards.record())
    dropped = boards is not None and any(o.state != "answered" for o in boards.outcomes.values())
    if not any(a.validations for a in fresh) and not dropped:  # boards that dropped are the verdict's to report
        raise UsageError(f"no artifact in {out} can run on {', '.join(runners)}",
                         f"formats here: {', '.join(sorted({a.format for a in arts}))}")
    _merge_validations(arts, fresh, boards.runner_names if boards is not None else set(), eff)
    validate_on = list(dict.fromkeys([*get_strs(m.config, "validate_on"), *runners]))
    m = replace(m, artifacts=tuple(a.to_dict() for a in arts), budget=eff.to_dict(),
                config={**m.config, "validate_on": validate_on}, verdict=verdict(arts, m.passes, m.fleet))
    return ValidateResult(out, _rewrite_folder(out, m).to_json())


def _merge_validations(arts: list[Artifact], fresh: list[Artifact], boards: set[str], eff: Budget) -> None:
    """Each artifact's new validations replace its older ones from the same runner and CPU; the kept older ones
    are re-checked against the budget in force. ``boards``: every board of this fleet run — a board that did not
    answer now must not keep an older pass."""

    for i, (old, new) in enumerate(zip(arts, fresh, strict=True)):
        replaced = {(v.runner, v.cpu_model) for v in new.validations}
        kept = [v for v in old.validations if (v.runner, v.cpu_model) not in replaced and v.runner not in boards]
        # a budget given now applies to the recorded results too
        kept = [replace(v, budget_check=check_budget(Metrics.from_dict(v.metrics), eff).to_dict()) for v in kept]
        arts[i] = replace(old, validations=(*kept, *new.validations))


def _rewrite_folder(out: Path, m: Manifest) -> Manifest:
    """Replace ``out`` with a copy (hard links where possible) carrying the new manifest and reports, sealed."""

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.edgeq-tmp-", dir=out.resolve().parent))
    try:
        shutil.rmtree(tmp)
        shutil.copytree(out, tmp, copy_function=_link_or_copy)
        for name in (MANIFEST_NAME, "report.md", "report.html"):
            (tmp / name).unlink(missing_ok=True)  # hard links: never write through to the original
        m = write_manifest(m, tmp)
        write_reports(m.to_json(), tmp)
        m = write_manifest(seal(m, tmp), tmp)
        commit_output(tmp, out)
        return m
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run(args: argparse.Namespace) -> int:
    specs = tuple(s.strip() for s in args.on.split(",") if s.strip())
    res = validate(args.outdir, specs, budget_from(args), progress_from(args), args.runner_timeout, fleet_from(args))
    print(terminal_summary(res.manifest, str(args.outdir)), file=human(args))
    if args.json:
        emit_json({"command": "validate", **json_result(res.manifest, str(args.outdir))})
    return exit_code(get_object(res.manifest, "verdict"))
