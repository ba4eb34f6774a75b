"""llama.cpp's side of the LLM anchors (bench/llm_anchors.py): runs with the Python of the llama-cpp-python venv,
so it imports nothing of edgeq (or of this repository) and only llama_cpp and numpy.

    python llama_worker.py quantize SRC.gguf DST.gguf Q8_0|Q4_K_M   # llama.cpp's own quantizer, requantizing
    python llama_worker.py serve MODEL.gguf THREADS                 # JSON lines on stdin -> JSON lines on stdout

``serve`` commands: {"op": "reset"}; {"op": "forward", "ids": [...], "start": P} (evaluates the tokens at
positions P.. through llama.cpp's KV cache, returns nothing: the caller times the round trip);
{"op": "score", "windows": [[...], ...]} -> {"nll": [[...]], "argmax": [[...]]} (full-window logits)."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

FTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def quantize(src: str, dst: str, kind: str) -> int:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[kind])
    # the only GGUF of the model is Q4_1: llama.cpp dequantizes each tensor to float32 and quantizes that, which is
    # what an F32 GGUF of the same (dequantized) weights would give
    params.allow_requantize = True
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


def _nll(llm: Any, window: list[int]) -> tuple[list[float], list[int]]:
    llm.reset()
    llm.eval(window)
    logits = np.asarray(llm.scores[:len(window) - 1], dtype=np.float64)
    m = logits.max(axis=-1, keepdims=True)
    lp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    nll = -lp[np.arange(len(window) - 1), window[1:]]
    return [float(x) for x in nll], [int(x) for x in logits.argmax(axis=-1)]


def _no_extra_buffer_types() -> None:
    """Load models with llama.cpp's extra CPU buffer types off. The sdist builds with -march=native, and on a
    CPU that lists AMX the AMX buffer type's first ``ldtilecfg`` faults (SIGSEGV) when the kernel has not granted
    the process AMX tile state (seen on this VM). Off also means no weight repacking into llama.cpp's interleaved
    GEMM layouts, so the figures are a lower bound for llama.cpp on this host."""
    import llama_cpp.llama_cpp as lc

    default = lc.llama_model_default_params

    def params() -> Any:
        p = default()
        p.use_extra_bufts = False
        return p

    lc.llama_model_default_params = params


def serve(model: str, threads: int) -> int:
    from llama_cpp import Llama

    _no_extra_buffer_types()

    kw: dict[str, Any] = {"model_path": model, "n_ctx": 512, "n_batch": 512, "n_threads": threads,
                          "n_threads_batch": threads, "verbose": False}
    llm = Llama(**kw)
    scorer: Any = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "reset":
            llm.reset()
            out: dict[str, Any] = {}
        elif cmd["op"] == "forward":
            llm.n_tokens = int(cmd["start"])  # eval() drops the cache from n_tokens on, as a rewind
            llm.eval(cmd["ids"])
            out = {}
        elif cmd["op"] == "score":
            # a second context that keeps every position's logits (the timed one keeps the last, as a chat does)
            scorer = scorer or Llama(**kw, logits_all=True)
            rows = [_nll(scorer, w) for w in cmd["windows"]]
            out = {"nll": [r[0] for r in rows], "argmax": [r[1] for r in rows]}
        else:
            return 2
        print(json.dumps(out), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "quantize":
        return quantize(argv[1], argv[2], argv[3])
    if argv[0] == "serve":
        return serve(argv[1], int(argv[2]))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
