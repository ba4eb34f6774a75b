"""Terminal progress: stage lines and tqdm bars on stderr (auto-disabled when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from edgeq.outdir import checkpoint


class ProgressBar(Protocol):
    """What callers use of a tqdm bar (tqdm is untyped); :class:`_NullBar` is the quiet one."""

    def update(self, n: int = 1) -> None: ...

    def set_postfix_str(self, s: str) -> None: ...


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._t0 = time.perf_counter()

    def stage(self, text: str) -> None:
        checkpoint(text)  # a no-op unless a test asked the run to pause here
        if self.enabled:
            print(f"[{time.perf_counter() - self._t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    @contextmanager
    def bar(self, total: int, desc: str, unit: str = "sample") -> Iterator[ProgressBar]:
        """A tqdm bar; on a non-terminal stderr (CI logs) it stays quiet except for the stage line."""
        from tqdm import tqdm  # tqdm only when a progress bar is drawn

        if not self.enabled:
            yield _NullBar()
            return
        with tqdm(total=total, desc=f"  {desc}", unit=unit, file=sys.stderr, leave=False,
                  disable=None, dynamic_ncols=True) as t:
            yield t


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass
