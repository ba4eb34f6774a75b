"""The anchors' own tools, each in its own venv under the user cache (~/.cache/edgeq/bench-anchors, or
$XDG_CACHE_HOME/edgeq/bench-anchors), made once by ``python -m venv`` + pip and reused while their pins are unchanged:

- optimum-executorch 1.1.0 pins transformers 5.0.0rc1 (edgeq pins 5.23), so its exporter runs in a venv of its
  own; it is given the same torch / executorch / torchao pins as edgeq, so the .pte it writes loads in edgeq's
  ExecuTorch 1.5.1 runtime and is timed in the same process as edgeq's artifacts.
- llama-cpp-python builds llama.cpp from its sdist (CPU, cmake); bench/llama_worker.py runs in that venv.

Every step raises AnchorMissing with the reason (and the log's tail) instead of failing the whole benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

OPTIMUM_PINS = ("torch==2.13.0", "executorch==1.5.1", "torchao==0.18.0", "optimum-executorch==1.1.0",
                "transformers==5.0.0rc1")
LLAMA_PINS = ("llama-cpp-python==0.3.36", "numpy")
WORKER = Path(__file__).with_name("llama_worker.py")


class AnchorMissing(Exception):
    """An anchor could not be built here; the message says which and why."""


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeq" / "bench-anchors"


def _run(cmd: list[str], log: Path, what: str, env: dict[str, str] | None = None) -> float:
    """Run CMD at nice 10 with its output in LOG; the wall seconds, or AnchorMissing with the log's tail."""
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(["nice", "-n", "10", *cmd], stdout=f, stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})})
    if rc != 0:
        tail = " | ".join(line.strip() for line in log.read_text().splitlines()[-3:])
        raise AnchorMissing(f"{what} failed (exit {rc}; log {log}): {tail}")
    return time.perf_counter() - t0


def venv(name: str, pins: tuple[str, ...]) -> tuple[Path, str]:
    """The venv's python (made if missing or its pins changed) and how long it took ("cached" if it existed)."""
    root = cache_root() / name
    stamp = root / ".pins"
    py = root / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == "\n".join(pins) and py.is_file():
        return py, "cached"
    root.parent.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"{name}.log"
    # the sdist build of llama.cpp: at most 2 compile jobs on a shared host
    secs = _run([sys.executable, "-m", "venv", "--clear", str(root)], log, f"python -m venv {root}")
    secs += _run([str(py), "-m", "pip", "install", "--quiet", *pins], log, f"pip install {' '.join(pins)}",
                 {"CMAKE_BUILD_PARALLEL_LEVEL": "2"})
    stamp.write_text("\n".join(pins))
    return py, f"{secs:.0f} s"


def optimum_pte(hf: Path, out: Path, scheme: str, max_seq_len: int) -> Path:
    """optimum-executorch's XNNPACK program of HF with its custom SDPA and custom KV cache: SCHEME (8da4w: group
    32, its default; 8da8w: per channel) linears and an 8-bit per-row embedding table."""
    pte = out / "model.pte"
    if pte.is_file():
        return pte
    py, _ = venv("optimum-executorch", OPTIMUM_PINS)
    out.mkdir(parents=True, exist_ok=True)
    cli = py.parent / "optimum-cli"
    _run([str(cli), "export", "executorch", "--model", str(hf), "--task", "text-generation", "--recipe", "xnnpack",
          "--use_custom_sdpa", "--use_custom_kv_cache", "--qlinear", scheme, "--qembedding", "8w",
          "--max_seq_len", str(max_seq_len), "--output_dir", str(out)], out / "export.log",
         f"optimum-cli export executorch --qlinear {scheme}")
    if not pte.is_file():
        raise AnchorMissing(f"optimum-cli wrote no {pte} (log {out / 'export.log'})")
    return pte


def llama_gguf(src: Path, out: Path, kind: str) -> Path:
    """SRC (the package's Q4_1 GGUF) requantized by llama.cpp to KIND (Q8_0, Q4_K_M)."""
    dst = out / f"{kind}.gguf"
    if dst.is_file():
        return dst
    py, _ = venv("llama-cpp", LLAMA_PINS)
    out.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".part")
    _run([str(py), str(WORKER), "quantize", str(src), str(tmp), kind], out / "quantize.log", f"llama.cpp quantize {kind}")
    tmp.rename(dst)
    return dst


class LlamaRemote:
    """llama.cpp through bench/llama_worker.py in its venv: the runner interface bench.llm_decode times."""

    def __init__(self, python: Path, gguf: Path, threads: int) -> None:
        # passive OpenMP waits: with spinning workers llama.cpp decoded 0.26 tok/s on this shared 2-core host
        # (load ~10) against 7.5 with passive ones
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        self.proc = subprocess.Popen([str(python), str(WORKER), "serve", str(gguf), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._ask(None)
        self.max_context = 512  # the worker's n_ctx

    def _ask(self, cmd: dict[str, Any] | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AnchorMissing(f"the llama.cpp worker exited (code {self.proc.poll()})")
        out: dict[str, Any] = json.loads(line)
        return out

    def reset(self) -> None:
        self._ask({"op": "reset"})

    def forward(self, ids: np.ndarray, start: int) -> np.ndarray:
        self._ask({"op": "forward", "ids": [int(t) for t in ids], "start": start})
        return np.zeros((0,), np.float32)

    def scores(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got = self._ask({"op": "score", "windows": windows.tolist()})
        return np.asarray(got["nll"]), np.asarray(got["argmax"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
