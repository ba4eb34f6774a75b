"""pytest plugin (entry point ``pytest11``, active wherever edgeq is installed).

- ``pytest --edgeq-check OUTDIR [--edgeq-check OUTDIR2] [--edgeq-on emulator]``: one test per export folder that
  re-validates it with ``edgeq.check`` (re-hash, re-run, budget) and fails listing the budget failures.
- the ``edgeq_export`` fixture: ``result = edgeq_export("pkg.mod:build", calib="calib.npz", target=...)`` exports
  into a temporary folder and returns the :class:`edgeq.ExportResult`; ``result.passed`` / ``result.failures``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeq.api import ExportResult, export_model
from edgeq.check import check
from edgeq.config import Budget
from edgeq.errors import EdgeqError
from edgeq.report.markdown import terminal_summary

_BUDGET_OPTS = (("max_accuracy_drop", "PTS"), ("min_cosine", "C"), ("min_sqnr", "DB"), ("min_top1_agreement", "F"),
               ("min_nn_agreement", "F"))


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("edgeq", "edgeq: re-check INT8 export folders (the CI gate as tests)")
    g.addoption("--edgeq-check", action="append", default=[], metavar="OUTDIR",
                help="add a test that re-validates this edgeq export folder (repeatable); the budget comes from the "
                     "--edgeq-* flags over the target profile, never from the folder's manifest")
    g.addoption("--edgeq-on", default=None, metavar="RUNNER[,RUNNER]",
                help="runners for --edgeq-check (default: host, plus the emulator for ARM targets once set up), "
                     "e.g. host,emulator")
    for dest, metavar in _BUDGET_OPTS:
        g.addoption(f"--edgeq-{dest.replace('_', '-')}", dest=f"edgeq_{dest}", type=float, default=None,
                    metavar=metavar, help=f"budget: {dest.replace('_', ' ')} (over the target profile's default)")


class EdgeqCheckFailed(Exception):
    def __init__(self, outdir: str, failures: list[str], summary: str) -> None:
        super().__init__(f"{outdir}: {len(failures)} failure(s)")
        self.outdir, self.failures, self.summary = outdir, failures, summary


class EdgeqCheckItem(pytest.Item):
    def __init__(self, *, outdir: str, name: str, parent: pytest.Collector | None = None) -> None:
        super().__init__(name, parent)  # what from_parent passes (besides outdir)
        self.outdir = outdir

    def runtest(self) -> None:
        opt = self.config.getoption
        budget = Budget(**{d: opt(f"edgeq_{d}") for d, _ in _BUDGET_OPTS})
        on = opt("edgeq_on")
        runners = tuple(s.strip() for s in on.split(",") if s.strip()) if on else None
        res = check(self.outdir, budget, runners)
        if not res.passed:
            m = dict(res.manifest)
            m["artifacts"] = [a.to_dict() for a in res.artifacts]
            m["budget"] = res.budget.to_dict()
            m["verdict"] = {"passed": False, "failures": res.failures,
                            "host_passes_arm_fails": res.host_passes_arm_fails}
            raise EdgeqCheckFailed(self.outdir, res.failures, terminal_summary(m, self.outdir))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: str | None = None) -> str:
        e = excinfo.value
        if isinstance(e, EdgeqCheckFailed):
            return "edgeq check failed:\n" + "\n".join(f"  - {f}" for f in e.failures) + "\n\n" + e.summary
        if isinstance(e, EdgeqError):
            return f"edgeq error: {e.cause}" + (f"\nhint: {e.hint}" if e.hint else "")
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path(self.outdir), None, f"edgeq check {self.outdir}"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for outdir in config.getoption("edgeq_check") or []:
        items.append(EdgeqCheckItem.from_parent(session, name=f"edgeq-check[{outdir}]", outdir=str(outdir)))


@pytest.fixture
def edgeq_export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ExportResult]]:
    """Factory: ``edgeq_export(model, calib=..., **PipelineConfig fields)`` -> ExportResult in a fresh folder."""
    def run(model: str, calib: str | Path, output: str | Path | None = None, **kwargs: object) -> ExportResult:
        out = Path(output) if output is not None else tmp_path_factory.mktemp("edgeq") / "out"
        return export_model(model, str(calib), out, **kwargs)

    yield run
