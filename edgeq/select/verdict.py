"""The one verdict function: every export, check, validate and sweep — tensor or text generation — composes its
``{"passed", "failures"}`` here, from typed per-artifact budget checks plus the target's stage failures plus the
lines that say no candidate met the budget (:func:`verdict`).

Each caller words its own rows (a tensor check names the runner, ``"mobilenet-int8 on host"``; a language model's
check names the artifact and the text it was measured on), so the failure strings a manifest holds stay the ones it
always held; the order they come in, and what makes the verdict pass, are decided once, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgeq.jsontypes import JSONObject


@dataclass(frozen=True)
class ArtifactCheck:
    """One artifact's budget check on one runner (or on one text): each failure becomes ``"{subject}: {failure}"``,
    and a failed check that gives no failure reads ``"{subject}: budget missed"``."""

    subject: str  # "mobilenet-int8 on host", "onnx-a"
    passed: bool
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """Whether what ships meets the budget, and why not; ``infra`` (boards that did not answer) fails the run
    without being a budget failure (``edgeq.validate.orchestrate.exit_code`` returns 3 for it)."""

    passed: bool
    failures: tuple[str, ...]
    infra: tuple[str, ...] = ()

    def to_dict(self) -> JSONObject:
        return {"passed": self.passed, "failures": list(self.failures)}


def verdict(checks: Sequence[ArtifactCheck], *, before: Sequence[str] = (), after: Sequence[str] = (),
            none_checked: str | None = None, infra: Sequence[str] = ()) -> Verdict:
    """Pass when every artifact check passed, no other failure was given and no infrastructure failed.

    Failures come in this order: ``before`` (worded by the caller: a format where no candidate met the budget, a
    replaced reference, failures already composed), each check's failures, ``after`` (the target's stages:
    ``"pass alignment: ..."``; a grid where no variant met the budget), then ``none_checked`` when there was no
    check at all (and no infrastructure failure to explain it)."""
    failures = [*before]
    # a check that failed without saying why still fails: never a silent pass
    failures += [f"{c.subject}: {f}" for c in checks for f in c.failures or (() if c.passed else ("budget missed",))]
    failures += after
    if none_checked is not None and not checks and not infra:
        failures.append(none_checked)
    return Verdict(not failures and not infra, tuple(failures), tuple(infra))
