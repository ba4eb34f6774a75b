"""``edgeq check``: re-validate OUTDIR from its manifest; the CI gate."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeq.commands.common import add_budget_flags, budget_from, progress_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="re-validate an export folder against a budget (CI gate)",
                       description="Re-hash every file in OUTDIR (a missing, changed, unlisted or symlinked file "
                                   "fails), recompute each artifact's format from its bytes, re-run every runnable "
                                   "artifact on the stored validation inputs and compare with the stored float "
                                   "reference. The budget is the flags below over the target profile; the "
                                   "manifest's budget is shown, never obeyed. Exit 0 on pass, 1 when the budget is "
                                   "exceeded, 2 on a usage or input error (including a tampered folder), 3 when a "
                                   "runner fails.")
    p.add_argument("outdir", type=Path, metavar="OUTDIR")
    p.add_argument("--on", default=None, metavar="RUNNER[,RUNNER]",
                   help="runners to check on (default: host, plus the emulator for ARM targets once set up; remote "
                        "runners named in the manifest are never contacted)")
    p.add_argument("--target", metavar="NAME|FILE.toml",
                   help="target profile for the budget and runners (default: the packaged profile the manifest "
                        "names; a target file is only read from this flag)")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML for CI test reports")
    p.add_argument("--public-key", type=Path, metavar="PEM",
                   help="require OUTDIR/edgeq.json.sig to be a valid ed25519 signature by this key (`edgeq sign`)")
    add_budget_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeq.check import check
    from edgeq.console import emit_json, human
    from edgeq.report.junit import write_junit
    from edgeq.report.markdown import terminal_summary
    from edgeq.report.terminal import json_result

    runners = tuple(s.strip() for s in args.on.split(",")) if args.on else None
    res = check(args.outdir, budget_from(args), runners, progress_from(args), target=args.target,
                public_key=args.public_key)
    m = dict(res.manifest)
    m["artifacts"] = [a.to_dict() for a in res.artifacts]
    m["budget"] = res.budget.to_dict()
    m["verdict"] = {"passed": res.passed, "failures": res.failures, "host_passes_arm_fails": res.host_passes_arm_fails,
                    "notes": res.notes}
    for f in res.findings:
        print(f"note: {f}", file=human(args))
    print(terminal_summary(m, str(args.outdir)), file=human(args))
    if args.junit:
        write_junit(args.junit, res.artifacts, suite=f"edgeq-check-{args.outdir.name}",
                    extra_failures=[f for f in res.failures if f.startswith("pass ") or f.startswith("no artifact")],
                    properties={"target": m["target"]["name"], "model": m["source"]["ref"]})
    if args.json:
        emit_json({"command": "check", **json_result(m, str(args.outdir)),
                   "junit": str(args.junit) if args.junit else None})
    return 0 if res.passed else 1
