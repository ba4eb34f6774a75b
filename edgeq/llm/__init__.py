"""Small causal language models: KV-cache export to .onnx (onnxruntime-genai layout) and .pte (ExecuTorch LLM
convention), 8-bit and 4-bit weights, perplexity-budgeted search, tokens/s and streaming generation."""

from edgeq.llm.config import LlmConfig, Variant

__all__ = ["LlmConfig", "Variant"]
