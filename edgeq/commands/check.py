"""``edgeq check``: re-validate OUTDIR from its manifest; the CI gate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edgeq.check import CheckRequest, run_check
from edgeq.commands.common import (
    add_budget_flags,
    add_fleet_flags,
    add_runner_timeout_flag,
    budget_from,
    fleet_from,
    progress_from,
)
from edgeq.console import emit_json, human
from edgeq.jsontypes import JSONObject, get_object, get_objects
from edgeq.report.junit import write_junit
from edgeq.report.markdown import terminal_summary
from edgeq.report.terminal import json_result
from edgeq.validate.orchestrate import exit_code

if TYPE_CHECKING:
    from edgeq.check import CheckResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="re-validate an export folder against a budget (CI gate)",
                       description="Re-hash every file in OUTDIR (a missing, changed, unlisted or symlinked file "
                                   "fails), recompute each artifact's format from its bytes, re-run every runnable "
                                   "artifact on the stored validation inputs and compare with the stored float "
                                   "reference (for a text-generation folder: perplexity on the stored token "
                                   "windows against the stored float NLL, see --max-ppl-increase / --float-model). "
                                   "The budget is the flags below over the target profile; the "
                                   "manifest's budget is shown, never obeyed. Exit 0 on pass, 1 when the budget is "
                                   "exceeded, 2 on a usage or input error (including a tampered folder), 3 when a "
                                   "runner fails or fewer boards answered than --min-boards.")
    p.add_argument("outdir", type=Path, metavar="OUTDIR")
    p.add_argument("--on", default=None, metavar="RUNNER[,RUNNER]",
                   help="runners to check on (default: host, plus the emulator for ARM targets once set up; remote "
                        "runners named in the manifest are never contacted); ssh://... and fleet:SELECTOR name boards")
    p.add_argument("--target", metavar="NAME|FILE.toml",
                   help="target profile for the budget and runners (default: the packaged profile the manifest "
                        "names; a target file is only read from this flag)")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML for CI test reports")
    p.add_argument("--public-key", type=Path, metavar="PEM",
                   help="require OUTDIR/edgeq.json.sig to be a valid ed25519 signature by this key (`edgeq sign`)")
    add_budget_flags(p)
    add_runner_timeout_flag(p)
    add_fleet_flags(p)
    g = p.add_argument_group("text-generation folders (perplexity re-measured from the stored windows)")
    g.add_argument("--max-ppl-increase", type=float, metavar="PCT",
                   help="budget: perplexity may rise at most PCT %% over float (default: the one recorded at export)")
    g.add_argument("--float-model", metavar="MODEL",
                   help="the float model (HF folder, .gguf or pkg.module:factory): recompute float perplexity on "
                        "the stored windows instead of trusting the stored reference")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runners = tuple(s.strip() for s in args.on.split(",")) if args.on else None
    request = CheckRequest(Path(args.outdir), budget_from(args), runners, target=args.target,
                           public_key=Path(args.public_key) if args.public_key is not None else None,
                           max_ppl_increase=args.max_ppl_increase, float_model=args.float_model,
                           runner_timeout=args.runner_timeout, fleet=fleet_from(args))
    res = run_check(request, progress_from(args))
    m = dict(res.manifest)
    m["artifacts"] = [a.to_dict() for a in res.artifacts]
    m["budget"] = res.budget.to_dict() if res.llm is None else res.manifest["budget"]
    verdict: JSONObject = {"passed": res.passed, "failures": res.failures,
                           "host_passes_arm_fails": res.host_passes_arm_fails, "notes": res.notes}
    if res.fleet is not None:
        m["fleet"] = res.fleet
        verdict.update(fleet=res.fleet_verdict, infra_failures=res.infra_failures)
    m["verdict"] = verdict
    for f in res.findings:
        print(f"note: {f}", file=human(args))
    if res.llm is not None:
        print(lm_summary(res, str(args.outdir)), file=human(args))
    else:
        print(terminal_summary(m, str(args.outdir)), file=human(args))
    if args.junit:
        write_junit(args.junit, res.artifacts, suite=f"edgeq-check-{args.outdir.name}",
                    extra_failures=[f for f in res.failures if f.startswith("pass ") or f.startswith("no artifact")],
                    properties={"target": get_object(m, "target").get("name"),
                                "model": get_object(m, "source").get("ref")},
                    boards=get_objects(res.fleet, "boards") if res.fleet is not None else None)
    if args.json:
        emit_json({"command": "check", **json_result(m, str(args.outdir)),
                   "junit": str(args.junit) if args.junit else None})
    return exit_code(verdict)


def lm_summary(res: CheckResult, out: str) -> str:
    """The re-measured perplexity table of a text-generation folder."""
    lm = res.llm
    if lm is None:
        return ""
    w = max([8] + [len(a.name) for a in lm.artifacts])
    lines = [f"{out}: float perplexity {lm.float_ppl:.4f} ({lm.float_source}); budget +{lm.max_ppl_increase_pct:g} % "
             f"({lm.budget_source})", f"  {'artifact':<{w}} {'PPL':>9} {'PPL x':>7} {'top-1':>7}  verdict"]
    for a in lm.artifacts:
        lines.append(f"  {a.name:<{w}} {a.metrics['ppl']:>9.4f} {a.metrics['ppl_ratio']:>7.4f} "
                     f"{a.metrics['top1_agreement']:>7.1%}  {'pass' if a.passed else 'FAIL'}")
    lines.append("verdict: " + ("PASS" if res.passed else "FAIL: " + "; ".join(res.failures)))
    return "\n".join(lines)
