"""ONNX path: torch.onnx (dynamo) export, ONNX Runtime pre-processing and QDQ quantization."""
