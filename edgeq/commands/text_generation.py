"""The ``--task text-generation`` flags of ``edgeq export`` and their dispatch to :mod:`edgeq.llm`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeq.commands.common import progress_from
from edgeq.errors import UsageError
from edgeq.llm.api import export_llm
from edgeq.llm.config import PTE_DELEGATIONS, LlmConfig
from edgeq.llm.source import looks_like_lm


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "small language models (--task text-generation)",
        "MODEL is a Hugging Face causal-LM folder, a .gguf file or pkg.module:factory returning (model, tokenizer); "
        "detected automatically when config.json names a ...ForCausalLM architecture. Writes KV-cache artifacts: "
        "OUTDIR/onnx/VARIANT/ (onnxruntime-genai layout, MatMulNBits int4/int8) and OUTDIR/pte/VARIANT.pte "
        "(ExecuTorch LLM convention, XNNPACK). Per format the smallest variant inside --max-ppl-increase wins.")
    g.add_argument("--task", choices=("auto", "text-generation", "tensor"), default="auto",
                   help="auto: text-generation for causal LMs (HF folder with ...ForCausalLM, .gguf), else tensor")
    g.add_argument("--calib-text", type=Path, metavar="FILE", help="UTF-8 text for the search's perplexity trials")
    g.add_argument("--eval-text", type=Path, metavar="FILE",
                   help="UTF-8 text for the reported perplexity (default: the tail of --calib-text, disjoint)")
    g.add_argument("--seq-len", type=int, default=128, help="tokens per window (default 128)")
    g.add_argument("--max-context", type=int, default=512,
                   help="KV-cache length of the .pte, i.e. prompt + generated tokens (default 512)")
    g.add_argument("--calib-windows", type=int, default=16,
                   help="windows spread over --calib-text that the search judges rungs on (default 16)")
    g.add_argument("--eval-windows", type=int, default=16,
                   help="windows spread over --eval-text for the reported metrics (default 16)")
    g.add_argument("--emulate", default="", metavar="TARGET[,TARGET]",
                   help="also measure the shipped artifacts' decode tokens/s on these ARM targets' emulated CPUs "
                        "(qemu; recorded as emulation, not device speed; needs `edgeq emulator setup`)")
    g.add_argument("--pte-delegation", choices=PTE_DELEGATIONS, default="auto",
                   help="what XNNPACK runs in the .pte: all = every op XNNPACK takes (optimum-executorch's xnnpack "
                        "recipe), linears = only the quantized linears (ExecuTorch's llama recipe default; norms, "
                        "SiLU and adds run on ExecuTorch's slower portable kernels), auto (default) = all in the "
                        "custom-sdpa program, linears in the static-cache one (which all would cut into ~11 "
                        "delegates per layer: a much longer build)")
    g.add_argument("--pte-program", choices=("auto", "custom-sdpa", "static-cache"), default="auto",
                   help="the .pte program: custom-sdpa = ExecuTorch's fast decode path (its llama::update_cache / "
                        "custom_sdpa ops, which ExecuTorch's LLM runner links), static-cache = transformers' "
                        "static cache (portable ops, ~6x slower decode, loads in edgeq's C++ runner / --emulate); "
                        "auto (default) = custom-sdpa unless the model's attention needs static-cache")
    g.add_argument("--max-ppl-increase", type=float, default=10.0, metavar="PCT",
                   help="budget: perplexity may rise at most PCT %% over float (default 10)")


def wants_llm(args: argparse.Namespace) -> bool:
    if args.task == "text-generation":
        return True
    if args.task == "tensor":
        return False

    return looks_like_lm(args.model)


def run(args: argparse.Namespace) -> int:
    if args.calib_text is None:
        raise UsageError("text generation needs --calib-text FILE (plain UTF-8 text)",
                         "e.g. --calib-text calib.txt --eval-text eval.txt")
    cfg = LlmConfig(model=args.model, output=args.output, calib_text=args.calib_text, eval_text=args.eval_text,
                    formats=tuple(f.strip() for f in args.format.split(",") if f.strip()), seq_len=args.seq_len,
                    max_context=args.max_context, calib_windows=args.calib_windows, eval_windows=args.eval_windows,
                    max_ppl_increase=args.max_ppl_increase, force=args.force, pte_delegation=args.pte_delegation,
                    target=args.target, pte_program=args.pte_program,
                    emulate=tuple(t.strip() for t in args.emulate.split(",") if t.strip()))
    result = export_llm(cfg, progress_from(args))
    print(summary(result.manifest, str(result.output)), file=sys.stdout)
    return 0 if result.passed else 1


def summary(m: dict, out: str) -> str:  # type: ignore[type-arg]
    f = m["llm"]["float"]
    w = max([8] + [len(a["name"]) for a in m["artifacts"]])
    lines = [f"{out}: float perplexity {f['ppl_eval']:.3f} on {m['llm']['eval_windows']} x {m['llm']['seq_len']} tokens",
             f"  {'artifact':<{w}} {'PPL x':>7} {'top-1':>7} {'greedy':>7} {'size x':>7} {'decode tok/s':>12}"]
    for a in m["artifacts"]:
        v = a["validations"][0]["metrics"]
        lines.append(f"  {a['name']:<{w}} {v['ppl_ratio']:>7.3f} {v['top1_agreement']:>7.1%} "
                     f"{v['greedy_agreement']:>7.1%} {v['size_ratio']:>7.3f} {v['decode_tokens_per_s']:>12.1f}"
                     + ("  <- pick" if a["details"]["pick"] else ""))
        for e in a["validations"][1:]:
            if e.get("emulated"):
                lines.append(f"  {'':<{w}} decode {e['metrics']['decode_tokens_per_s']:.2f} tok/s on emulated "
                             f"{e['cpu_model']} ({e.get('target', '')}; qemu, not device speed)")
    lines.append("verdict: " + ("PASS" if m["verdict"]["passed"] else "FAIL: " + "; ".join(m["verdict"]["failures"])))
    return "\n".join(lines)
