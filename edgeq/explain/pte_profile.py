"""Per-operator latency of a ``.pte`` on the host from ExecuTorch's ETDump, read with the devtools Inspector.

The pybindings record an ETDump when the program is loaded with ``enable_etdump=True``: one event per portable
kernel call (``native_call_*``), one ``DELEGATE_CALL`` per XNNPACK subgraph, and inside it one event per XNNPACK
operator (XNNPACK's own per-operator profile). Rows are the XNNPACK operators and the portable kernels; the
delegate's time outside its operators and the method's time outside every kernel get rows of their own, so the
table sums to ``Method::execute``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeq.explain.profile import OpTime, Profile, mean_per_run, overhead_row, per_run_coverage, sorted_ops

_RUN = "Method::execute"
_DELEGATE = "DELEGATE_CALL"
_INSTANCE = re.compile(r"\s+#\d+$")  # XNNPACK numbers its operator instances: "Convolution (NHWC, QC8) IGEMM #3"


class _PerfData(Protocol):
    @property
    def raw(self) -> Sequence[float]: ...


class InspectorEvent(Protocol):
    """What is read of an ``executorch.devtools.inspector.Event`` (executorch ships no type information)."""

    @property
    def name(self) -> str: ...

    @property
    def is_delegated_op(self) -> bool | None: ...

    @property
    def perf_data(self) -> _PerfData | None: ...


def profile_pte(path: Path, inputs: list[np.ndarray], artifact: str, runs: int = 10,
                warmup: int = 2) -> Profile:
    """Profile ``forward`` of one ``.pte`` on the first sample of ``inputs`` (batch 1)."""
    import torch
    from executorch.devtools import Inspector  # optional: the [executorch] extra
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    module = _load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    sample = [torch.from_numpy(np.ascontiguousarray(x[:1]).copy()).contiguous() for x in inputs]
    wall = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        module.forward(sample)
        if i >= warmup:
            wall.append((time.perf_counter() - t0) * 1000.0)
    with tempfile.TemporaryDirectory(prefix="edgeq-etdump-") as tmp:
        etdump = Path(tmp) / "model.etdp"
        module.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
        # The Inspector warns (no debug buffer: no tensor data) and prints nothing we need.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            inspector = Inspector(etdump_path=str(etdump))
    events = [e for block in inspector.event_blocks if block.name == "Execute" for e in block.events]
    return _from_events(events, artifact, warmup, runs, wall)


def _times(e: InspectorEvent, warmup: int, runs: int) -> list[float]:
    raw = list(e.perf_data.raw) if e.perf_data is not None else []
    return [float(x) for x in raw[warmup:warmup + runs]]  # ms, one per run (the Inspector's default scale)


def _from_events(events: Sequence[InspectorEvent], artifact: str, warmup: int, runs: int, wall: list[float]) -> Profile:
    whole: list[float] = []
    delegate: list[float] = []
    kernels: dict[str, list[float]] = collections.defaultdict(list)
    meta: dict[str, tuple[str, str]] = {}
    calls: collections.Counter[str] = collections.Counter()  # two delegates both number an operator "#1"
    for e in events:
        ts = _times(e, warmup, runs)
        if e.name == _RUN:
            whole += ts
        elif e.name == _DELEGATE:
            delegate += ts
        elif e.is_delegated_op:
            kernels[e.name] += ts
            meta[e.name] = (_INSTANCE.sub("", e.name), "XNNPACK")
            calls[e.name] += 1
        elif e.name.startswith("native_call_"):
            kernels[e.name] += ts
            meta[e.name] = (e.name.removeprefix("native_call_"), "portable")
            calls[e.name] += 1
    n = max(1, len(whole))
    per_run = mean_per_run(kernels, n)
    ops = [OpTime(k, meta[k][0], meta[k][1], ms, calls[k]) for k, ms in per_run.items()]
    inside = sum(ms for k, ms in per_run.items() if meta[k][1] == "XNNPACK")
    delegate_ms = sum(delegate) / n
    ops += overhead_row(delegate_ms, inside, "XNNPACK delegate (outside its operators)")
    portable = sum(ms for k, ms in per_run.items() if meta[k][1] == "portable")
    run_ms = sum(whole) / n
    ops += overhead_row(run_ms, max(delegate_ms, inside) + portable, "ExecuTorch method (outside every kernel)")
    notes = () if whole else ("the ETDump has no Method::execute events: this runtime was built without the "
                              "event tracer",)
    return Profile(artifact, "pte", "ExecuTorch ETDump (devtools Inspector)", len(whole), warmup,
                   sum(wall) / len(wall) if wall else 0.0, run_ms, sorted_ops(ops), notes,
                   coverage=per_run_coverage(whole, wall))
