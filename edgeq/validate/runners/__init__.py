"""Runners execute an artifact on inputs and return outputs + timings. They differ only in where."""

from edgeq.validate.runners.base import Runner, RunResult, get_runner, register_runner, runner_names

__all__ = ["RunResult", "Runner", "get_runner", "register_runner", "runner_names"]
