"""The runner protocol and registry.

``run(artifact, inputs.npz, workdir) -> RunResult`` — the host, emulator, SSH and adb runners differ only in
how they ship files and start the device-side program. A runner spec is a string: ``host``, ``emulator``
(the target's CPU model), ``ssh://user@host[:port][/workdir]``, ``adb[://serial]``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeq.errors import RunnerError, UsageError
from edgeq.jsontypes import JSONObject
from edgeq.targetspec import Target

RESULT_PREFIX = "EDGEQ_RESULT "  # the last line every device-side program prints: "EDGEQ_RESULT {json}"


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    latency_ms: float | None  # median single-sample latency
    latency_kind: str  # "host", "emulated" (instruction-level under qemu: not device speed), "device"
    runtime: str
    extra: JSONObject = field(default_factory=dict)


class Runner(Protocol):
    name: str

    def supports(self, fmt: str) -> bool: ...

    def describe(self) -> JSONObject:
        """Where it runs: runner, machine, cpu model, features — recorded in the manifest."""
        ...

    def run(self, artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult: ...


RunnerFactory = Callable[[str, Target], Runner]  # (spec, target) -> Runner
_REGISTRY: dict[str, RunnerFactory] = {}


def register_runner(scheme: str) -> Callable[[RunnerFactory], RunnerFactory]:
    def deco(factory: RunnerFactory) -> RunnerFactory:
        if scheme in _REGISTRY:
            raise ValueError(f"runner scheme {scheme!r} registered twice")
        _REGISTRY[scheme] = factory
        return factory

    return deco


def runner_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_runner(spec: str, target: Target) -> Runner:
    """Build a runner from a spec string such as ``host`` or ``ssh://pi@raspberrypi.local``."""
    _load_builtin()
    scheme = spec.split("://", 1)[0]
    factory = _REGISTRY.get(scheme)
    if factory is None:
        raise UsageError(f"unknown runner {spec!r}", f"use one of: {', '.join(sorted(_REGISTRY))}")
    return factory(spec, target)


def _load_builtin() -> None:
    for mod in ("host", "host_cpp", "emulator", "ssh"):
        try:
            importlib.import_module(f"edgeq.validate.runners.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"edgeq.validate.runners.{mod}":
                raise


def tail_text(text: str | None, n: int = 8) -> str:
    """The last ``n`` non-empty lines of a program's output, for an error message."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return ("; stderr: " + " | ".join(lines[-n:])) if lines else ""


def parse_result(stdout: str, where: str, err: type[Exception] = RunnerError) -> JSONObject:
    """The ``EDGEQ_RESULT {json}`` line a device-side program prints last."""
    for line in reversed((stdout or "").splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                d = json.loads(line[len(RESULT_PREFIX):])
            except json.JSONDecodeError as e:
                raise err(f"{where}: malformed result line ({e})") from e
            if isinstance(d, dict):
                return d
    raise err(f"{where}: no {RESULT_PREFIX.strip()} line in its output" + tail_text(stdout))


def parse_results(stdout: str, where: str, count: int, err: type[Exception] = RunnerError) -> list[JSONObject]:
    """The ``count`` ``EDGEQ_RESULT {json}`` lines a device-side program printed for ``count`` models, in order."""
    lines = [ln for ln in (stdout or "").splitlines() if ln.startswith(RESULT_PREFIX)]
    if len(lines) != count:
        raise err(f"{where}: {len(lines)} result line(s) for {count} model(s)" + tail_text(stdout))
    return [parse_result(ln, where, err) for ln in lines]
