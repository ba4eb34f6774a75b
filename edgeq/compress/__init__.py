"""Compression beyond PTQ, applied to the float torch model before capture so every format gets it:
structured pruning, unstructured sparsity, low-rank factorisation, weight clustering and QAT, each followed by a
distillation fine-tune from the float model. ``--compress prune:0.3,lowrank:0.9,cluster:16,qat``.

Only the light config types are imported here (edgeq.config depends on them); the methods live in
:mod:`edgeq.compress.apply` and one module per method.
"""

from edgeq.compress.spec import CompressOptions, TrainOptions, parse_spec

__all__ = ["CompressOptions", "TrainOptions", "parse_spec"]
