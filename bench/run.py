"""Run every benchmark section and print one combined report (also written to bench/results/latest.md).

A section is a module in ``bench/`` listed in SECTIONS exposing ``TITLE: str`` and ``run(workdir: Path) -> Table``.
Timing lives here, never in pass/fail tests.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.table import Table

SECTIONS = ("bench.onnx_slice", "bench.executorch", "bench.emulation", "bench.search", "bench.real_quant",
            "bench.compress", "bench.compress_encoder", "bench.compress_qat", "bench.llm_anchors")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", action="append", default=[], help="run only sections whose module name contains this")
    args = ap.parse_args(argv)
    out: list[str] = [f"# edgeq benchmarks ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", ""]
    failed = False
    with tempfile.TemporaryDirectory(prefix="edgeq-bench-") as tmp:
        for name in SECTIONS:
            if args.only and not any(o in name for o in args.only):
                continue
            try:
                mod = importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name == name:
                    continue
                raise
            print(f"== {mod.TITLE}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                table: Table = mod.run(Path(tmp) / name.rsplit(".", 1)[-1])
            except Exception:  # noqa: BLE001  one broken section must not hide the others' numbers
                failed = True
                out += [f"## {mod.TITLE}", "", "```", traceback.format_exc(), "```", ""]
                continue
            out += [f"## {mod.TITLE}", "", table.markdown(), "", f"_section wall time {time.perf_counter() - t0:.1f} s_", ""]
            print(out[-3], flush=True)
    text = "\n".join(out)
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    (res / "latest.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
