"""Why a model is slow: per-operator latency profiles of the shipped artifacts on the host (onnxruntime's
profiler for ``.onnx``, ExecuTorch's ETDump for ``.pte``), and warnings naming the operators that run outside
the XNNPACK delegate or in float around Q/DQ pairs the runtime did not fuse. The export records them in the
manifest (``explain``); the report and ``edgeq explain OUTDIR`` show them."""
