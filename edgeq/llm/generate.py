"""Streaming text generation from an exported folder (either artifact), greedy or temperature / top-p."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np

from edgeq.errors import ArtifactError, UsageError
from edgeq.jsontypes import get_object, get_str
from edgeq.llm.hf import HFTokenizer
from edgeq.llm.runners import LmRunner, open_runner
from edgeq.manifest import read_manifest


def pick_artifact(outdir: Path, fmt: str | None) -> tuple[Path, str]:
    m = read_manifest(Path(outdir))
    arts = [a for a in m.artifacts if get_object(a, "details").get("task") == "text-generation"
            and (fmt is None or a["format"] == fmt)]
    if not arts:
        raise ArtifactError(f"{outdir} holds no text-generation artifact" + (f" in format {fmt}" if fmt else ""),
                            "export one with `edgeq export MODEL --task text-generation --format onnx,pte`")
    a = next((a for a in arts if get_object(a, "details").get("pick")), arts[0])
    return Path(outdir) / get_str(get_object(a, "details"), "folder"), get_str(a, "format")


def load_tokenizer(outdir: Path) -> HFTokenizer:
    from transformers import AutoTokenizer  # heavy: transformers, only for Hugging Face and language models

    return AutoTokenizer.from_pretrained(str(Path(outdir) / "tokenizer"))


def sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p)
    keep = np.cumsum(p[order]) - p[order] < top_p  # the smallest prefix whose mass reaches top_p
    probs = p[order[keep]] / p[order[keep]].sum()
    return int(order[keep][rng.choice(len(probs), p=probs)])


def stream(runner: LmRunner, tokenizer: HFTokenizer, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
           top_p: float = 0.9, seed: int = 0) -> Iterator[str]:
    """Yield text pieces as tokens are decoded through the KV cache; stops at an EOS token."""
    if max_new_tokens < 1:
        raise UsageError("--max-new-tokens must be >= 1")
    if not 0 < top_p <= 1:
        raise UsageError("--top-p must be in (0, 1]")
    ids = np.asarray(tokenizer(prompt, add_special_tokens=True)["input_ids"], dtype=np.int64)
    if len(ids) == 0:
        raise UsageError("the prompt is empty")
    budget = min(max_new_tokens, runner.max_context - len(ids))
    if budget < 1:
        raise UsageError(f"the prompt ({len(ids)} tokens) fills the model's context ({runner.max_context})")
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    rng = np.random.default_rng(seed)
    runner.reset()
    logits = runner.forward(ids, 0)
    out: list[int] = []
    shown = ""
    pos = len(ids)
    for _ in range(budget):
        tok = sample(logits[-1], temperature, top_p, rng)
        if tok in eos:
            break
        out.append(tok)
        text = tokenizer.decode(out, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            yield text[len(shown):]
            shown = text
        logits = runner.forward(np.array([tok], dtype=np.int64), pos)
        pos += 1


class SamplingArgs(TypedDict, total=False):
    """:func:`stream`'s decoding options, as keyword arguments of :func:`generate`."""

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int


def generate(outdir: Path, prompt: str, fmt: str | None = None, **kw: Unpack[SamplingArgs]) -> Iterator[str]:
    path, f = pick_artifact(outdir, fmt)
    return stream(open_runner(path, f), load_tokenizer(outdir), prompt, **kw)
