"""Time per decoded token vs position: through the KV cache (should stay flat) vs re-running the whole sequence
for every new token (grows with the position), for each LM artifact of an ``edgeq export --task
text-generation`` folder (or one ``--pte FILE`` / ``--onnx DIR``).

    python -m bench.llm_decode OUTDIR [--positions 16,64,128,256,448] [--repeats 3]
    python -m bench.llm_decode OUTDIR --compare old=a.pte new=b.pte onnx=DIR [--rounds 5 --steps 32]

Token ids are the folder's evaluation windows (``validation/inputs.npz``). For each position P: the cache
column is the median time of one single-token step at position P after a prefill of P tokens; the re-run column
is the median time of one forward pass over all P+1 tokens from an empty cache. Host time on this machine: only
the shape of the curve and the ratios mean anything on a shared host."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _median_s(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def decode_curve(runner: Any, ids: np.ndarray, positions: list[int], repeats: int = 3) -> list[dict[str, float]]:
    """Rows {position, cache_ms, rerun_ms} for one runner (edgeq.llm.runners interface)."""
    rows = []
    for p in positions:
        if p + 1 > min(len(ids), runner.max_context):
            break
        runner.reset()
        runner.forward(ids[:p], 0)  # prefill P tokens

        def step(p: int = p) -> None:
            # the step at P overwrites the same cache slot each repeat, so every repeat is the same work
            runner.forward(ids[p:p + 1], p)

        cache_s = _median_s(step, repeats)

        def rerun(p: int = p) -> None:
            runner.reset()
            runner.forward(ids[:p + 1], 0)

        rerun_s = _median_s(rerun, repeats)
        rows.append({"position": p, "cache_ms": round(1000 * cache_s, 2), "rerun_ms": round(1000 * rerun_s, 2)})
    return rows


def interleaved(runners: dict[str, Any], ids: np.ndarray, prompt: int, steps: int, rounds: int) -> dict[str, Any]:
    """Prefill and decode tokens/s of several runners measured in turns on the same host: each round times the
    prefill of PROMPT tokens, then STEPS single-token steps (positions PROMPT.., the ids' own next tokens) per
    runner, runners in rotating order; the figures per runner are the medians over rounds. On a shared host only the ratios between
    runners of one such run mean anything; the load average is recorded beside them."""
    import os

    times: dict[str, list[float]] = {n: [] for n in runners}
    prefill: dict[str, list[float]] = {n: [] for n in runners}
    load0 = os.getloadavg()[0]
    names = list(runners)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = runners[name]
            run.reset()
            t0 = time.perf_counter()
            run.forward(ids[:prompt], 0)
            prefill[name].append(prompt / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for p in range(prompt, prompt + steps):
                run.forward(ids[p:p + 1], p)
            times[name].append(steps / (time.perf_counter() - t0))
    return {"decode_tokens_per_s": {n: round(float(np.median(v)), 2) for n, v in times.items()},
            "prefill_tokens_per_s": {n: round(float(np.median(v)), 2) for n, v in prefill.items()},
            "rounds": rounds, "prompt_tokens": prompt, "steps": steps,
            "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count()}


def artifacts(out: Path) -> list[tuple[str, str, Path]]:
    m = json.loads((out / "edgeq.json").read_text())
    return [(a["name"], a["format"], out / a["details"]["folder"]) for a in m["artifacts"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="an edgeq text-generation export folder")
    ap.add_argument("--pte", type=Path, help="only this .pte")
    ap.add_argument("--onnx", type=Path, help="only this ONNX folder")
    ap.add_argument("--positions", default="16,64,128,256,448")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime / torch intra-op threads (default 1)")
    ap.add_argument("--compare", nargs="+", metavar="NAME=PATH",
                    help="instead of the curve: decode tokens/s of these artifacts (.pte file or ONNX folder) "
                         "measured in turns in one run (interleaved), printed as JSON")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64)
    args = ap.parse_args(argv)
    import torch

    from edgeq.llm.runners import OnnxLM, PteLM

    torch.set_num_threads(args.threads)
    ids = np.load(args.out / "validation" / "inputs.npz")["eval_windows"].reshape(-1)
    if args.compare:
        pairs = [c.split("=", 1) for c in args.compare]
        runners = {n: (PteLM(Path(p)) if p.endswith(".pte") else OnnxLM(Path(p), threads=args.threads))
                   for n, p in pairs}
        print(json.dumps(interleaved(runners, ids, args.prompt, args.steps, args.rounds)), flush=True)
        return 0
    todo = ([("pte", "pte", args.pte)] if args.pte else []) + ([("onnx", "onnx", args.onnx)] if args.onnx else [])
    todo = todo or artifacts(args.out)
    positions = [int(p) for p in args.positions.split(",")]
    print("| artifact | position | KV-cache step ms | full re-run ms | re-run / step |")
    print("|---|---|---|---|---|")
    for name, fmt, path in todo:
        runner = PteLM(path) if fmt == "pte" else OnnxLM(path, threads=args.threads)
        for r in decode_curve(runner, ids, positions, args.repeats):
            print(f"| {name} | {r['position']} | {r['cache_ms']:.1f} | {r['rerun_ms']:.1f} | "
                  f"{r['rerun_ms'] / r['cache_ms']:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
