"""edgeq: PyTorch model -> INT8 ONNX / ExecuTorch artifacts for phones and boards, validated on ARM kernels.

Python API (the CLI is a thin layer over it)::

    import edgeq
    result = edgeq.export("mypkg.models:build", calib="calib.npz", output="out", target="raspberry-pi-5",
                          formats=("onnx", "pte"), budget=edgeq.Budget(max_accuracy_drop=0.5))
    result.passed, result.failures, result.artifact("onnx-int8-static").bytes
    verdict = edgeq.check("out", budget=edgeq.Budget(min_cosine=0.99))
"""

from edgeq._version import __version__
from edgeq.api import ExportResult
from edgeq.api import export as run_pipeline
from edgeq.api import export_model as export
from edgeq.check import CheckResult, check
from edgeq.config import Budget, PipelineConfig, QuantOptions, SearchOptions
from edgeq.config_file import load_config
from edgeq.errors import EdgeqError
from edgeq.targets import list_targets, load_target
from edgeq.targetspec import Target

__all__ = ["Budget", "CheckResult", "EdgeqError", "ExportResult", "PipelineConfig", "QuantOptions", "SearchOptions", "Target",
           "__version__", "check", "export", "list_targets", "load_config", "load_target", "run_pipeline"]
