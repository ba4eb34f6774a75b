"""``.bpte``: an ExecuTorch BundledProgram — the INT8 program plus N evaluation inputs and the float model's
expected outputs, so a device can verify itself (ExecuTorch's bundled-IO ``verify_result_with_bundled_expected_output``).

BundledProgram has no field for tolerances, so edgeq records them next to it in the manifest
(``artifact.details["bundled"]``): ``atol`` is derived from the INT8 program's measured deviation from the float
model on the bundled cases (× a safety factor, floored by a fraction of the output range) and ``rtol`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import ArtifactError

if TYPE_CHECKING:
    import torch
    from executorch.devtools.bundled_program.schema.bundled_program_schema import Value
    from executorch.exir import ExecutorchProgramManager

DEFAULT_CASES = 8
ATOL_FACTOR = 2.0  # ARM kernels round differently from x86 ones; leave room for that, not for a broken model
ATOL_RANGE_FLOOR = 0.01  # ... but never tighter than 1 % of the expected outputs' range
METHOD = "forward"


@dataclass(frozen=True)
class VerifyResult:
    passed: bool
    cases: int
    failures: list[str]
    max_abs_diff: float


def write_bundle(program: ExecutorchProgramManager, cases: list[tuple[tuple[torch.Tensor, ...], list[np.ndarray]]],
                 path: Path) -> None:
    """Serialize ``program`` (an ExecutorchProgramManager) with (inputs, expected outputs) test cases."""
    import torch
    from executorch.devtools import BundledProgram  # optional: the [executorch] extra
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    tests = [MethodTestCase(inputs=[x.contiguous().clone() for x in inputs],
                            expected_outputs=[torch.from_numpy(np.ascontiguousarray(o)).clone() for o in outs])
             for inputs, outs in cases]
    bundled = BundledProgram(program, [MethodTestSuite(method_name=METHOD, test_cases=tests)])
    path.write_bytes(serialize_from_bundled_program_to_flatbuffer(bundled))


def derive_tolerances(expected: list[list[np.ndarray]], actual: list[list[np.ndarray]]) -> dict[str, float]:
    diff = max(float(np.max(np.abs(e.astype(np.float64) - a.astype(np.float64))))
               for es, as_ in zip(expected, actual, strict=True) for e, a in zip(es, as_, strict=True))
    span = max(float(np.ptp(e)) if e.size else 0.0 for es in expected for e in es)
    atol = max(ATOL_FACTOR * diff, ATOL_RANGE_FLOOR * span, 1e-4)
    return {"rtol": 0.0, "atol": float(atol), "measured_max_abs_diff": diff}


def read_bundle(path: Path) -> tuple[bytes, list[tuple[list[np.ndarray], list[np.ndarray]]]]:
    """(program bytes, [(inputs, expected outputs)]) of a ``.bpte`` — numpy only at the call site."""
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program
    from executorch.exir.scalar_type import ScalarType  # optional: the [executorch] extra

    try:
        bp = deserialize_from_flatbuffer_to_bundled_program(Path(path).read_bytes())
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable ExecuTorch bundled program ({type(e).__name__}: {str(e)[:200]})",
                            "the file is corrupt or truncated; re-run edgeq export") from e
    dtypes = {ScalarType.FLOAT: np.float32, ScalarType.LONG: np.int64, ScalarType.INT: np.int32,
              ScalarType.BYTE: np.uint8, ScalarType.CHAR: np.int8, ScalarType.BOOL: np.bool_,
              ScalarType.HALF: np.float16, ScalarType.DOUBLE: np.float64}

    def arr(v: Value) -> np.ndarray:
        t = v.val
        return np.frombuffer(bytes(t.data), dtype=dtypes[ScalarType(t.scalar_type)]).reshape(t.sizes).copy()

    suite = next((s for s in bp.method_test_suites if s.method_name == METHOD), None)
    if suite is None:
        raise ArtifactError(f"{path}: the bundle has no test suite for {METHOD!r}")
    cases = [([arr(v) for v in c.inputs], [arr(v) for v in c.expected_outputs]) for c in suite.test_cases]
    return bytes(bp.program), cases


def verify_outputs(path: Path, outputs: list[list[np.ndarray]], rtol: float, atol: float) -> VerifyResult:
    """Compare a device's outputs for each bundled case with the bundled expected outputs (numpy ``allclose``)."""
    _, cases = read_bundle(path)
    if len(outputs) != len(cases):
        return VerifyResult(False, len(cases), [f"got outputs for {len(outputs)} cases, the bundle has {len(cases)}"],
                            float("inf"))
    failures, worst = [], 0.0
    for i, ((_, expected), got) in enumerate(zip(cases, outputs, strict=True)):
        for k, (e, g) in enumerate(zip(expected, got, strict=True)):
            g = np.asarray(g).reshape(e.shape)
            d = float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)))) if e.size else 0.0
            worst = max(worst, d)
            if not np.allclose(g, e, rtol=rtol, atol=atol):
                failures.append(f"case {i} output {k}: max |Δ| {d:.4g} > atol {atol:.4g} (rtol {rtol})")
    return VerifyResult(not failures, len(cases), failures, worst)


def verify_on_runtime(path: Path, rtol: float, atol: float) -> VerifyResult:
    """What a device does: load the bundle into the ExecuTorch runtime, run each bundled input, verify."""
    from executorch.extension.pybindings import portable_lib as et  # optional: the [executorch] extra

    try:
        bundle = et._load_bundled_program_from_buffer(Path(path).read_bytes())
    except Exception as e:
        raise ArtifactError(f"{path}: the ExecuTorch runtime cannot load the bundle ({str(e)[:200]})",
                            "the file is corrupt or truncated; re-run edgeq export") from e
    _, cases = read_bundle(path)
    failures = []
    for i in range(len(cases)):
        try:
            # Loads bundled input i, executes the method and compares with the bundled expected outputs.
            bundle.verify_result_with_bundled_expected_output(METHOD, i, rtol, atol)
        except Exception as e:  # the runtime raises when an output is outside the tolerance
            failures.append(f"case {i}: {type(e).__name__}: {str(e)[:200]}")
    return VerifyResult(not failures, len(cases), failures, float("nan"))
