"""Static (QDQ) INT8 quantization with ``onnxruntime.quantization`` (dynamic INT8: :mod:`edgeq.onnx.dynamic`)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict

import numpy as np
import onnx

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.errors import QuantizationError, UsageError
from edgeq.jsontypes import JSONObject
from edgeq.onnx.histogram_calib import histogram_ranges
from edgeq.onnx.hybrid import gemms_as_matmuls, linear_nodes
from edgeq.onnx.overrides import TensorOverrides, fixed_range_overrides, int16_overrides

_CALIB = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy", "distribution": "Distribution"}
QTYPE = {"int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16", "uint16": "QUInt16", "int4": "QInt4"}


class DatasetReader:
    """``CalibrationDataReader`` over a :class:`Dataset`, one sample per call, with a progress callback."""

    def __init__(self, data: Dataset, on_sample: Callable[[], None] | None = None) -> None:
        self._data = data
        self._i = 0
        self._on_sample = on_sample

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._data):
            return None
        sample = self._data.sample(self._i)
        self._i += 1
        if self._on_sample:
            self._on_sample()
        return sample

    def rewind(self) -> None:
        self._i = 0

    def __len__(self) -> int:
        return len(self._data)


def reader_class() -> type[DatasetReader]:
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(DatasetReader, CalibrationDataReader):  # type: ignore[misc]  # untyped ORT base; ORT checks isinstance
        pass

    return Reader


class OrtExtraOptions(TypedDict, total=False):
    """The ``extra_options`` edgeq passes to ORT's ``quantize_static`` (ORT's own key names)."""

    WeightSymmetric: bool
    ActivationSymmetric: bool
    CalibMovingAverage: bool
    CalibPercentile: float
    TensorQuantOverrides: TensorOverrides


@dataclass(frozen=True)
class QatGrid:
    """What QAT trained, for the QDQ model to keep instead of calibrating."""

    # tensor name -> (scale, INT8 zero point) that replace the calibrated range of that tensor
    fixed_ranges: dict[str, tuple[float, int]] = field(default_factory=dict)
    weight_bits: int = 8  # 4 stores the weights as QDQ int4 (symmetric [-8, 7])


def quantize_onnx_static(src: Path, dst: Path, calib: Dataset, opts: QuantOptions,
                         on_sample: Callable[[], None] | None = None, *,
                         qat: QatGrid | None = None, calibration_cache: Path | None = None) -> JSONObject:
    """QDQ static quantization. Returns the quantization details for the manifest.

    ``qat``: QAT's trained activation ranges and weight bits (:class:`QatGrid`).
    ``calibration_cache``: ORT's JSON cache of the calibrated ranges — read when it exists, written otherwise. The
    ranges depend only on SRC, the calibration data and the method (not on per-channel weights, excluded nodes or
    16-bit overrides), so the search's trials of one method calibrate once.
    ``opts.dynamic_linears``: the hybrid (:mod:`edgeq.onnx.hybrid`), which calibrates its own rewritten graph (the
    cache does not apply to it).
    """
    if opts.dynamic_linears:
        return quantize_onnx_hybrid(src, dst, calib, opts, on_sample)

    calib = calib.head(opts.max_calibration_samples)
    qat = qat or QatGrid()
    fixed = fixed_range_overrides(src, qat.fixed_ranges)
    extra = _extra_options(src, opts, fixed)
    weight_type = "int4" if qat.weight_bits == 4 else opts.weight_type
    if not (opts.calibration and opts.activation_type and opts.weight_type):
        raise UsageError("quantize_onnx_static needs calibration, activation_type and weight_type set",
                         "pass QuantOptions.resolved(target.quant_defaults())")
    try:
        _run_quantize_static(src, dst, reader_class()(calib, on_sample), opts, extra, calibration_cache,
                             weight_type or "int8")
    except KeyboardInterrupt:
        raise
    except Exception as e:
        raise QuantizationError(f"onnxruntime static quantization failed: {type(e).__name__}: {str(e)[:300]}",
                                "try --calibration minmax, or exclude the failing node with --exclude-node") from e
    kept_float = float_graph_outputs(dst)
    return {
        "method": "static",
        "float_outputs": kept_float,
        "format": "QDQ",
        "calibration": opts.calibration,
        "calibration_samples": len(calib),
        "per_channel": bool(opts.per_channel),
        "activation_type": opts.activation_type,
        "weight_type": weight_type,
        "reduce_range": bool(opts.reduce_range),
        "activation_symmetric": extra["ActivationSymmetric"],
        "nodes_excluded": list(opts.nodes_to_exclude),
        "op_types_excluded": list(opts.op_types_to_exclude),
        "int16_activation_nodes": list(opts.int16_activation_nodes),
        "fixed_ranges": sorted(fixed),
        "tool": "onnxruntime.quantization.quantize_static",
    }


def _extra_options(src: Path, opts: QuantOptions, fixed: TensorOverrides) -> OrtExtraOptions:
    """ORT's ``extra_options`` for ``opts``: symmetric weights, the activations' symmetry, range overrides."""
    extra: OrtExtraOptions = {
        # Weights are symmetric INT8 (what ARM/x86 int8 GEMM kernels want).
        "WeightSymmetric": True,
        "ActivationSymmetric": activation_symmetric(opts.activation_type),
        "CalibMovingAverage": False,
    }
    if opts.calibration == "percentile":
        extra["CalibPercentile"] = 99.999
    if opts.int16_activation_nodes:
        # Mixed precision: these nodes' outputs get 16-bit Q/DQ (ORT bumps the opset to 21 for 16-bit types).
        extra["TensorQuantOverrides"] = int16_overrides(src, opts)
    if fixed:
        extra["TensorQuantOverrides"] = {**extra.get("TensorQuantOverrides", {}), **fixed}
    return extra


def _run_quantize_static(src: Path, dst: Path, reader: DatasetReader, opts: QuantOptions, extra: OrtExtraOptions,
                         calibration_cache: Path | None, weight_type: str) -> None:
    """ORT's ``quantize_static`` with ``opts`` and ``weight_type`` (int4 for 4-bit QAT weights), calibrating
    through the cache when given (unresolved options: a UsageError from :func:`_quantize_static_call`)."""
    with quiet_stdout(), tempfile.TemporaryDirectory(prefix="edgeq-calib-") as tmp:
        cache = calibration_cache
        op_types = op_types_to_quantize(src, opts.op_types_to_exclude)
        if opts.calibration == "entropy" and not (cache is not None and cache.is_file()):
            cache = cache or Path(tmp, "entropy.json")
            histogram_ranges(src, reader, cache, op_types, Path(tmp), "entropy")
        try:
            _quantize_static_call(src, dst, reader, cache, opts, extra, weight_type)
        except ValueError as e:
            if opts.calibration != "percentile" or "Too many bins" not in str(e) or (cache and cache.is_file()):
                raise
            # ORT's own percentile histogram failed on an all-but-zero tensor: calibrate here, denormals flushed
            # (edgeq.onnx.histogram_calib), and quantize from that cache.
            reader.rewind()
            cache = cache or Path(tmp, "percentile.json")
            histogram_ranges(src, reader, cache, op_types, Path(tmp), "percentile", float(extra["CalibPercentile"]))
            _quantize_static_call(src, dst, reader, cache, opts, extra, weight_type)


def _quantize_static_call(src: Path, dst: Path, reader: DatasetReader, cache: Path | None, opts: QuantOptions,
                          extra: OrtExtraOptions, weight_type: str) -> None:
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if opts.calibration is None or opts.activation_type is None:  # quantize_onnx_static resolved them first
        raise UsageError("ORT static quantization needs calibration and activation_type set",
                         "pass QuantOptions.resolved(target.quant_defaults())")
    quantize_static(
        str(src), str(dst), None if cache is not None and cache.is_file() else reader,
        calibration_cache_path=str(cache) if cache is not None else None,
        quant_format=QuantFormat.QDQ,
        per_channel=bool(opts.per_channel),
        reduce_range=bool(opts.reduce_range),
        activation_type=getattr(QuantType, QTYPE[opts.activation_type]),
        weight_type=getattr(QuantType, QTYPE[weight_type]),
        nodes_to_exclude=list(opts.nodes_to_exclude) or None,
        op_types_to_quantize=op_types_to_quantize(src, opts.op_types_to_exclude),
        calibrate_method=getattr(CalibrationMethod, _CALIB[opts.calibration]),
        extra_options=extra,
    )


def quantize_onnx_hybrid(src: Path, dst: Path, calib: Dataset, opts: QuantOptions,
                         on_sample: Callable[[], None] | None = None) -> JSONObject:
    """The hybrid (:mod:`edgeq.onnx.hybrid`): static QDQ with the linear layers excluded, then ONNX Runtime's
    dynamic INT8 on exactly those layers."""
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    rewritten = gemms_as_matmuls(model)
    matmuls, adds = linear_nodes(model)
    if not matmuls:
        raise QuantizationError(f"{src.name}: no linear layer (MatMul / Gemm with a weight) for the hybrid scheme",
                                "use the static scheme")
    with tempfile.TemporaryDirectory(prefix="edgeq-hybrid-") as tmp:
        plain, static = Path(tmp, "linear_matmuls.onnx"), Path(tmp, "static.onnx")
        onnx.save(model, str(plain))
        excluded = tuple(dict.fromkeys((*opts.nodes_to_exclude, *matmuls, *adds)))
        info = quantize_onnx_static(plain, static, calib, replace(opts, dynamic_linears=False, nodes_to_exclude=excluded),
                                    on_sample)
        try:
            with quiet_stdout():
                quantize_dynamic(str(static), str(dst), per_channel=bool(opts.per_channel),
                                 reduce_range=bool(opts.reduce_range),  # the target's scheme, as for the convs
                                 weight_type=QuantType.QInt8, nodes_to_quantize=matmuls, op_types_to_quantize=["MatMul"])
        except Exception as e:
            raise QuantizationError(f"onnxruntime dynamic quantization of the linear layers failed: "
                                    f"{type(e).__name__}: {str(e)[:300]}", "use the static scheme") from e
    return {**info, "method": "hybrid", "dynamic_linears": matmuls, "gemms_rewritten": rewritten,
            "tool": "onnxruntime.quantization.quantize_static (convolutions) + quantize_dynamic (linears)"}


def float_graph_outputs(path: Path) -> list[str]:
    """Drop the Q/DQ pair ORT puts on each graph output, in place; returns the outputs now written in float.

    The consumer of a model's outputs (softmax, argmax, a distance) is float, so 8-bit outputs only add error: a
    classifier's logits land on a grid of range/255 (EfficientNet-Lite1: steps of 0.052), which flips top-1 where
    two classes are close — measured 0.887 -> 0.907 top-1 agreement with float on 150 held-out crops, the same
    model otherwise. The producer keeps its quantized inputs (ORT still runs it on the integer kernels)."""
    model = onnx.load(str(path), load_external_data=False)  # external data stays where it is, beside PATH
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    drop: set[int] = set()
    kept: list[str] = []
    for out in g.output:
        dq = producer.get(out.name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or readers.get(q.output[0], 0) != 1:
            continue
        src = producer.get(q.input[0])
        if src is None or readers.get(q.input[0], 0) != 1:
            continue  # a graph input, or a tensor other nodes read: leave the pair
        src.output[list(src.output).index(q.input[0])] = out.name
        drop.update((id(q), id(dq)))
        kept.append(out.name)
    if kept:
        nodes = [n for n in g.node if id(n) not in drop]
        del g.node[:]
        g.node.extend(nodes)
        used = {i for n in nodes for i in n.input}
        inits = [t for t in g.initializer if t.name in used]  # the dropped pairs' scales and zero points
        del g.initializer[:]
        g.initializer.extend(inits)
        onnx.save(model, str(path))
    return kept


def activation_symmetric(activation_type: str | None) -> bool:
    """Whether calibrated activation ranges are made symmetric around zero (zero point 0).

    8-bit activations are asymmetric: after ReLU / ReLU6 a symmetric range spends half the 256 levels on negatives
    that never occur, and it keeps the activation's ``Clip`` as a float op between DequantizeLinear and
    QuantizeLinear — ORT's ClipQuantFusion drops a Clip only when the QuantizeLinear's representable range lies
    inside the clip's, i.e. starts at 0 for ReLU6 (EfficientNet-Lite0: 33 Clips left in float with symmetric int8).
    16-bit activations (mixed precision, run as float between Q/DQ anyway) keep symmetric ranges.
    """
    return activation_type == "int16"


def op_types_to_quantize(src: Path, excluded: tuple[str, ...]) -> list[str] | None:
    if not excluded:
        return None

    model = onnx.load(str(src), load_external_data=False)
    return sorted({n.op_type for n in model.graph.node} - set(excluded))


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """ORT's quantizer prints progress to stdout; keep the terminal for edgeq's own progress. Its log records
    go through ``logging`` untouched: library code leaves the application's logging configuration alone."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        yield
