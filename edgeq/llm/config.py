"""Frozen configs for the LLM flow: the run (LlmConfig) and one quantization variant (Variant)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeq.jsontypes import JSONObject

FORMATS = ("onnx", "pte")
PTE_DELEGATIONS = ("linears", "all")
# the .pte program (edgeq.llm.pte_export): auto = custom-sdpa unless the attention needs what the custom op lacks
PTE_PROGRAMS = ("auto", "custom-sdpa", "static-cache")


@dataclass(frozen=True)
class Variant:
    """One weight-quantization recipe. ``bits`` is the body's weight width; ``keep8`` names layer groups kept at
    8 bits (``lm_head``: the output projection; ``mixed``: llama.cpp's sensitive layers, ONNX only; ``ends``: the
    first and last decoder blocks, .pte only). ``accuracy_level`` is MatMulNBits' activation math (ONNX only):
    4 = int8 activations (the fast ARM/x86 path), 1 = float32 activations (weight-only int8/int4 math)."""

    format: str
    bits: int  # 4 or 8 (32: the float export)
    group: int = 32  # block/group size along the input axis; 0 = per output channel
    symmetric: bool = True
    activations: str = "weight-only"  # weight-only | dynamic-int8 (ExecuTorch 8da4w/8da8w)
    keep8: tuple[str, ...] = ()
    embedding_bits: int = 8  # 0 keeps the embedding table float
    algo: str = "default"  # ONNX: default (RTN) | k_quant
    accuracy_level: int = 4  # ONNX MatMulNBits: 4 = int8 activation math, 1 = float32
    smooth: bool = False  # .pte: SmoothQuant folded into norms / up-projections before quantizing (edgeq.llm.smooth)

    @property
    def name(self) -> str:
        if self.bits == 32:
            return f"{self.format}-fp32"
        act = "8da" if self.activations == "dynamic-int8" else "w"
        grp = f"g{self.group}" if self.group else "pc"
        keep = "".join(f"-{k}8" for k in self.keep8)
        sym = "" if self.symmetric else "-asym"
        algo = "" if self.algo == "default" else f"-{self.algo}"
        emb = f"-emb{self.embedding_bits}" if self.embedding_bits else "-embf"
        acc = "" if self.accuracy_level == 4 else f"-acc{self.accuracy_level}"
        sq = "-sq" if self.smooth else ""
        return f"{self.format}-{act}{self.bits}{grp}{sym}{algo}{sq}{keep}{acc}{emb}"

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["name"] = self.name
        d["keep8"] = list(self.keep8)
        return d


@dataclass(frozen=True)
class LlmConfig:
    """One ``edgeq export --task text-generation`` run."""

    model: str
    output: Path
    calib_text: Path
    eval_text: Path | None = None  # None: the tail of --calib-text, disjoint from the calibration windows
    formats: tuple[str, ...] = FORMATS
    seq_len: int = 128
    max_context: int = 512  # the static KV cache length of the .pte; the ONNX model is dynamic
    calib_windows: int = 16  # the search's sample: its 95 % bound needs more than a handful (edgeq.llm.metrics)
    eval_windows: int = 16
    max_ppl_increase: float = 10.0  # percent over float perplexity
    greedy_prompts: int = 4
    greedy_tokens: int = 32
    variants: tuple[Variant, ...] = field(default_factory=tuple)  # empty: the default search ladder per format
    # ARM targets whose CPU is emulated (qemu) to measure the shipped artifacts' decode tokens/s: emulation,
    # not device speed
    emulate: tuple[str, ...] = ()
    # .pte XNNPACK delegation: "linears" = only the dynamically quantized linears (ExecuTorch's llama recipe
    # default; ~2x faster to build), "all" = every op XNNPACK takes (slower build, faster program in ExecuTorch's
    # Python runtime); float variants always delegate all. Measured on SmolLM2-135M in the README.
    pte_delegation: str = "linears"
    # The target profile: its checks (storage, RAM with the KV cache, Android's 16 KB .pte layout) apply, the .pte is
    # lowered with its layout, and an ARM target's CPU is emulated for decode tokens/s once the emulator is set up.
    target: str = "x86-64"
    # .pte program: custom-sdpa = ExecuTorch's fast decode path (its custom KV-cache and SDPA ops; the ExecuTorch
    # LLM runner links them, the wheel's bare C++ runtime does not), static-cache = transformers' static cache
    # (portable ops only, ~6x slower decode on SmolLM2-135M; what the emulated C++ runner can load)
    pte_program: str = "auto"
    force: bool = False
    version: int = 1

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["output"] = str(self.output)
        d["calib_text"] = str(self.calib_text)
        d["eval_text"] = None if self.eval_text is None else str(self.eval_text)
        d["variants"] = [v.to_dict() for v in self.variants]
        return d
