"""Validate on many SSH boards at once: ``--jobs`` boards in parallel, one time limit per board, one row per board.

A run is a fleet run when it names a ``fleet:`` selector, two or more ``ssh://`` boards, or ``--min-boards``. Each
board runs its artifacts one after another (a board timing two models at once would time neither), while up to
``jobs`` boards work at the same time. A board that cannot be reached, drops, or runs out of ``board_timeout``
is **unreachable**; one that answers but cannot run the artifacts (no onnxruntime, a crash) is **error**; both
record no metrics (a board's partial results are dropped) and never count as a pass. Boards that answered are
**passed** or **failed** on the budget. ``min_boards`` (default: every selected board) is how many must answer:
fewer is an infrastructure failure (exit 3), reached before slow work when the probe already shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.config import Budget, FleetOptions
from edgeq.errors import DeviceUnreachableError, FleetError, RunnerError
from edgeq.jsontypes import JSONObject, get_int, get_objects, get_str, get_strs
from edgeq.manifest import Artifact, Validation
from edgeq.progress import Progress, ProgressBar
from edgeq.targetspec import Target
from edgeq.validate.fleet import Board, is_board_spec, select_boards
from edgeq.validate.metrics import check_budget, compare
from edgeq.validate.runners.base import RunResult
from edgeq.validate.runners.ssh import SshRunner

STATUSES = ("passed", "failed", "unreachable", "error")


def validation_of(where: JSONObject, result: RunResult, reference: dict[str, np.ndarray],
                  labels: np.ndarray | None, budget: Budget, board: str | None = None) -> Validation:
    """One (artifact, runner) record: the run's outputs against the float reference, checked on the budget."""
    metrics = compare(reference, result.outputs, labels)
    return Validation(
        runner=get_str(where, "runner", RunnerError), machine=get_str(where, "machine", RunnerError),
        cpu_model=get_str(where, "cpu_model", RunnerError), features=get_strs(where, "features", RunnerError),
        emulated=bool(where.get("emulated")),
        metrics=metrics.to_dict(), budget_check=check_budget(metrics, budget).to_dict(),
        latency_ms=result.latency_ms, latency_kind=result.latency_kind, runtime=result.runtime, board=board)


@dataclass
class Outcome:
    """What one board gave: ``answered`` with its validations, or ``unreachable`` / ``error`` with a reason."""

    board: Board
    state: str = "pending"  # pending | answered | unreachable | error
    reason: str = ""
    seconds: float = 0.0
    validations: list[tuple[str, Validation]] = field(default_factory=list)  # (artifact name, record)


@dataclass(frozen=True)
class RunInputs:
    """What every board runs: the folder, the inputs file, the float reference and the budget."""

    outdir: Path
    inputs: Path
    reference: dict[str, np.ndarray]
    labels: np.ndarray | None
    budget: Budget
    workdir: Path


class FleetRun:
    def __init__(self, boards: list[Board], options: FleetOptions, target: Target) -> None:
        self.options = options
        self.min_boards = options.min_boards if options.min_boards is not None else len(boards)
        if self.min_boards > len(boards):
            raise FleetError(f"--min-boards {self.min_boards} but only {len(boards)} board(s) selected",
                             "lower --min-boards or select more boards")
        self.runners = {b.name: SshRunner(target, b.spec) for b in boards}
        self.outcomes = {b.name: Outcome(b) for b in boards}
        self.target_name: str | None = getattr(target, "name", None)

    @property
    def runner_names(self) -> set[str]:
        return {o.board.runner for o in self.outcomes.values()}

    def _pool(self, work: Callable[[Outcome], Outcome], progress: Progress, label: str) -> None:
        """Run ``work`` for every pending board, ``jobs`` at a time; report each board as it finishes."""
        todo = [o for o in self.outcomes.values() if o.state == "pending"]
        pool = ThreadPoolExecutor(max_workers=min(self.options.jobs, max(1, len(todo))), thread_name_prefix="edgeq-board")
        try:
            futures = [pool.submit(self._timed, o, work) for o in todo]
            for f in as_completed(futures):  # each board is reported when it is done, not after the slowest
                o = f.result()
                if o.state == "answered":
                    bad = sum(not v.budget_check["passed"] for _, v in o.validations)
                    progress.stage(f"board {o.board.name}: {len(o.validations)} artifact(s), "
                                   f"{'all within budget' if not bad else f'{bad} over budget'} ({o.seconds:.1f} s)")
                elif o.state != "pending":
                    progress.stage(f"board {o.board.name}: {o.state} during {label} ({o.reason[:160]})")
        except BaseException:  # Ctrl-C: boards not started yet never start; running ssh calls end by their timeout
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _timed(self, o: Outcome, work: Callable[[Outcome], Outcome]) -> Outcome:
        runner = self.runners[o.board.name]
        t0 = time.monotonic()
        runner.deadline = t0 + self.options.board_timeout - o.seconds  # one budget for probe + runs
        try:
            return work(o)
        except DeviceUnreachableError as e:
            o.state, o.reason, o.validations = "unreachable", e.cause, []
        except RunnerError as e:
            o.state, o.reason, o.validations = "error", e.cause, []
        finally:
            o.seconds += time.monotonic() - t0
        return o

    def preflight(self, progress: Progress) -> None:
        """Probe every board in parallel; fail before slow work when fewer than ``min_boards`` can answer."""
        progress.stage(f"probing {len(self.outcomes)} board(s), {self.options.jobs} at a time")
        other = [o.board.name for o in self.outcomes.values() if o.board.target not in (None, self.target_name)]
        if other:  # allowed (one build checked on a mixed shelf), but never silently
            progress.stage(f"note: board(s) {', '.join(other)} have another profile than the artifacts' target "
                           f"{self.target_name}")

        def probe(o: Outcome) -> Outcome:
            self.runners[o.board.name].probe()
            return o

        self._pool(probe, progress, "the probe")
        self._require_quorum(pending_ok=True)

    def _require_quorum(self, pending_ok: bool) -> None:
        ok = sum(o.state in (("pending", "answered") if pending_ok else ("answered",)) for o in self.outcomes.values())
        if ok < self.min_boards:
            down = [f"{o.board.name} ({o.reason[:240]})" for o in self.outcomes.values()
                    if o.state in ("unreachable", "error")]
            raise DeviceUnreachableError(f"only {ok} of {len(self.outcomes)} board(s) can answer, --min-boards "
                                         f"{self.min_boards}: {'; '.join(down)}",
                                         "bring the boards up, or lower --min-boards")

    def jobs_for(self, artifacts: list[Artifact]) -> int:
        return sum(len(self._supported(o, artifacts)) for o in self.outcomes.values() if o.state == "pending")

    def _supported(self, o: Outcome, artifacts: list[Artifact]) -> list[Artifact]:
        r = self.runners[o.board.name]
        return [a for a in artifacts if a.role != "auxiliary" and r.supports(a.format)]

    def run(self, artifacts: list[Artifact], inputs: RunInputs, progress: Progress, bar: ProgressBar) -> None:
        """Validate on every board that answered the probe; add each board's records, in board order, to the
        artifacts (new Artifacts in the same places of ``artifacts``)."""
        def work(o: Outcome) -> Outcome:
            runner = self.runners[o.board.name]
            where = runner.describe()
            share = self._supported(o, artifacts)
            results = runner.run_all([(inputs.outdir / a.path, a.format) for a in share], inputs.inputs,
                                     inputs.workdir)
            for art, res in zip(share, results, strict=True):
                o.validations.append((art.name, validation_of(where, res, inputs.reference, inputs.labels,
                                                              inputs.budget, o.board.name)))
            o.state = "answered"
            return o

        n = self.jobs_for(artifacts)
        self._pool(work, progress, "the run")
        bar.update(n)
        at = {a.name: i for i, a in enumerate(artifacts)}
        for o in self.outcomes.values():
            for name, v in o.validations:
                artifacts[at[name]] = artifacts[at[name]].with_validation(v)

    def record(self) -> JSONObject:
        """The manifest's ``fleet`` section: the options and one entry per board, with its status."""
        boards = []
        for o in self.outcomes.values():
            status = o.state
            if status == "answered":
                status = "passed" if all(v.budget_check["passed"] for _, v in o.validations) else "failed"
            boards.append({**o.board.to_dict(), "status": status, "reason": o.reason,
                           "validations": len(o.validations), "seconds": round(o.seconds, 3)})
        return {"file": self.options.file, "jobs": self.options.jobs, "board_timeout_s": self.options.board_timeout,
                "min_boards": self.min_boards, "boards": boards}


def split_runners(specs: tuple[str, ...], target: Target, options: FleetOptions) -> tuple[tuple[str, ...], FleetRun | None]:
    """``specs`` without the boards, and the fleet run of the boards (None for zero or one plain ssh:// board,
    which keeps the single-device behaviour: any failure of it is an error)."""
    boards = [s for s in specs if is_board_spec(s)]
    fleet_mode = any(s.startswith("fleet:") for s in boards) or len(boards) > 1 or options.min_boards is not None
    if not fleet_mode:
        return specs, None
    picked = select_boards(specs, options.file)
    if not picked:
        raise FleetError("--min-boards given but no ssh:// board or fleet: selector", "add boards to --validate-on / --on")
    return tuple(s for s in specs if not is_board_spec(s)), FleetRun(picked, options, target)


def fleet_verdict(fleet: JSONObject) -> tuple[JSONObject, list[str]]:
    """Counts per status for the verdict, and the infrastructure failure when too few boards answered."""
    boards = get_objects(fleet, "boards")
    counts = {s: sum(b["status"] == s for b in boards) for s in STATUSES}
    answered = counts["passed"] + counts["failed"]
    min_boards = get_int(fleet, "min_boards")
    summary: JSONObject = {"boards": len(boards), **counts, "answered": answered, "min_boards": min_boards,
                           "quorum_met": answered >= min_boards}
    infra = []
    if not summary["quorum_met"]:
        down = [f"{b['name']}: {b['status']}" for b in boards if b["status"] in ("unreachable", "error")]
        infra.append(f"fleet: {answered} of {len(boards)} board(s) answered, --min-boards "
                     f"{min_boards} ({'; '.join(down)})")
    return summary, infra
