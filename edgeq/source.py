"""Model references: ``pkg.module:factory`` (or ``path/file.py:factory``), a ``.pt2`` ExportedProgram, ``.onnx``,
or a local Hugging Face model directory (``config.json`` + ``model.safetensors``, see :mod:`edgeq.hfdir`).

Loading is safe: ``.pt2`` members are inspected and loaded without pickle (``edgeq.pt2safe``), ``.onnx`` through
``onnx.load`` + the checker, and a factory is only imported and called because the user named it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import onnx

from edgeq.compress.qat_graph import QatGraph
from edgeq.compress.spec import MethodConfig
from edgeq.errors import ArtifactError, ModelSourceError
from edgeq.external_data import check_external_data
from edgeq.hashing import sha256_bytes, sha256_file
from edgeq.hfdir import is_hf_dir, load_hf_dir
from edgeq.pt2safe import load_exported_program
from edgeq.signature import TensorSpec

if TYPE_CHECKING:
    import onnx
    import torch

SourceKind = Literal["factory", "pt2", "onnx"]



@dataclass
class ModelSource:
    """A resolved model. Exactly one of ``module`` / ``exported`` / ``onnx_path`` is set."""

    ref: str
    kind: SourceKind
    sha256: str
    input_names: list[str]
    module: torch.nn.Module | None = None
    exported: torch.export.ExportedProgram | None = None
    onnx_path: Path | None = None
    example_inputs: dict[str, np.ndarray] | None = None
    declared_signature: list[TensorSpec] | None = None
    # edgeq.compress.qat_graph.QatGraph after --compress ...,qat: the trained fake-quant graph whose ranges both format
    # backends ship (instead of re-calibrating).
    qat: QatGraph | None = None
    # The --compress steps this module went through, in order (empty: the user's model as loaded): each INT8
    # candidate's recipe records them (Recipe.compression).
    compression: tuple[MethodConfig, ...] = ()

    @property
    def is_torch(self) -> bool:
        return self.kind in ("factory", "pt2")

    def onnx_file(self) -> Path:
        """The source .onnx file; only ``.onnx`` sources have one."""
        if self.onnx_path is None:
            raise ModelSourceError(f"{self.ref} is a {self.kind} source, not an .onnx file")
        return self.onnx_path


def load_source(ref: str, trust_pickle: bool = False) -> ModelSource:
    """Resolve a model reference; raises :class:`ModelSourceError` / :class:`ArtifactError` with a hint."""
    if ref.endswith(".onnx"):
        return _load_onnx(Path(ref))
    if ref.endswith(".pt2"):
        return _load_pt2(Path(ref), trust_pickle)
    p = Path(ref)

    if is_hf_dir(p):
        return _load_hf_dir(p)
    if ":" in ref:
        return _load_factory(ref)
    if p.exists():
        raise ModelSourceError(f"{ref}: unsupported model file type {p.suffix!r}",
                               "pass a .pt2 (torch.export.save), an .onnx, or pkg.module:factory")
    raise ModelSourceError(f"model not found: {ref}",
                           "pass an existing .onnx / .pt2 file, or pkg.module:factory (note the colon)")


def _load_onnx(path: Path) -> ModelSource:
    if not path.is_file():
        raise ModelSourceError(f"model file not found: {path}", "check the path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, ...: all mean "unusable file"
        raise ArtifactError(f"{path}: corrupt or truncated ONNX model ({type(e).__name__}: {str(e)[:200]})",
                            "re-export the model; check the file was copied completely") from e

    check_external_data(model, path)  # confined to the model's folder before anything reads it
    try:
        # by path: the checker then resolves external data next to the model, not in the cwd
        onnx.checker.check_model(str(path.absolute()))
    except Exception as e:  # onnx raises DecodeError, ValidationError, ...: all mean "unusable file"
        raise ArtifactError(f"{path}: corrupt or truncated ONNX model ({type(e).__name__}: {str(e)[:200]})",
                            "re-export the model; check the file was copied completely") from e
    init_names = {i.name for i in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        specs.append(_onnx_value_spec(vi))
    return ModelSource(ref=str(path), kind="onnx", sha256=sha256_file(path),
                       input_names=[s.name for s in specs], onnx_path=path.absolute(), declared_signature=specs)


def _onnx_value_spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    tt = vi.type.tensor_type
    dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
    dims: list[int | str] = []
    for i, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or ("batch" if i == 0 else f"d{i}"))
    return TensorSpec(vi.name, dtype, tuple(dims))


def _load_pt2(path: Path, trust_pickle: bool = False) -> ModelSource:
    ep = load_exported_program(path, trust_pickle)
    specs: list[TensorSpec] = []
    user_inputs = list(ep.graph_signature.user_inputs)
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    for name in user_inputs:
        val = placeholders[name].meta.get("val")
        if val is None or not hasattr(val, "shape"):
            raise ModelSourceError(f"{path}: input {name!r} is not a tensor", "edgeq supports tensor inputs only")
        dims: list[int | str] = [int(d) if isinstance(d, int) or str(d).isdigit() else str(d) for d in val.shape]
        specs.append(TensorSpec(name, str(val.dtype).removeprefix("torch."), tuple(dims)))
    return ModelSource(ref=str(path), kind="pt2", sha256=sha256_file(path), input_names=user_inputs,
                       exported=ep, declared_signature=specs)


def import_factory(ref: str) -> Callable[..., object]:
    mod_name, _, attr = ref.rpartition(":")
    if not mod_name or not attr:
        raise ModelSourceError(f"bad model reference {ref!r}", "use pkg.module:factory or path/to/file.py:factory")
    try:
        if mod_name.endswith(".py"):
            file = Path(mod_name)
            if not file.is_file():
                raise ModelSourceError(f"model file not found: {file}")
            spec = importlib.util.spec_from_file_location(f"edgeq_user_{file.stem}", file)
            if spec is None or spec.loader is None:
                raise ModelSourceError(f"cannot load {file} as a Python module", "point at a .py file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            _cwd_on_path()
            module = importlib.import_module(mod_name)
    except ModelSourceError:
        raise
    except ImportError as e:
        raise ModelSourceError(f"cannot import {mod_name!r}: {e}",
                               "check the module path and that its package is installed / on PYTHONPATH") from e
    except Exception as e:
        raise ModelSourceError(f"importing {mod_name!r} raised {type(e).__name__}: {e}") from e
    try:
        factory: object = getattr(module, attr)
    except AttributeError as e:
        raise ModelSourceError(f"{mod_name!r} has no attribute {attr!r}",
                               f"define a function {attr}() returning an nn.Module") from e
    if not callable(factory):
        raise ModelSourceError(f"{ref} is not callable (it is a {type(factory).__name__})",
                               "point at a function or class that returns an nn.Module")
    return factory


def _cwd_on_path() -> None:
    """Resolve ``pkg.module`` from the current directory first, as ``python -m`` does; the ``edgeq`` console
    script otherwise only sees installed packages."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _load_factory(ref: str) -> ModelSource:
    import torch  # heavy: torch, imported only where a model is built or run

    factory = import_factory(ref)
    try:
        produced = factory()
    except Exception as e:
        raise ModelSourceError(f"{ref}() raised {type(e).__name__}: {e}",
                               "the factory must build the model with no arguments") from e
    example: object = None
    if isinstance(produced, tuple) and len(produced) == 2 and isinstance(produced[0], torch.nn.Module):
        produced, example = produced
    if not isinstance(produced, torch.nn.Module):
        raise ModelSourceError(f"{ref}() returned a {type(produced).__name__}, not a torch.nn.Module",
                               "return an nn.Module, or a (module, example_inputs) pair")
    module = produced.eval()
    names = _forward_input_names(module)
    example_np: dict[str, np.ndarray] | None = None
    if example is not None:
        example_np = _example_to_numpy(example, names, ref)
        names = list(example_np)
    h = state_hash(module)
    specs = None
    if example_np is not None:
        specs = [TensorSpec(k, str(v.dtype), ("batch", *v.shape[1:])) for k, v in example_np.items()]
    return ModelSource(ref=ref, kind="factory", sha256=h, input_names=names, module=module,
                       example_inputs=example_np, declared_signature=specs)


def _load_hf_dir(p: Path) -> ModelSource:
    module, example = load_hf_dir(p)
    example_np = _example_to_numpy(example, _forward_input_names(module), str(p))
    specs = [TensorSpec(k, str(v.dtype), ("batch", *v.shape[1:])) for k, v in example_np.items()]
    return ModelSource(ref=str(p), kind="factory", sha256=state_hash(module), input_names=list(example_np),
                       module=module, example_inputs=example_np, declared_signature=specs)


def _forward_input_names(module: torch.nn.Module) -> list[str]:
    params = inspect.signature(module.forward).parameters.values()
    return [p.name for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty] or [
        p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _example_to_numpy(example: object, names: list[str], ref: str) -> dict[str, np.ndarray]:
    import torch  # heavy: torch, imported only where a model is built or run

    if isinstance(example, torch.Tensor):
        example = (example,)
    if isinstance(example, dict):
        items = list(example.items())
    elif isinstance(example, (tuple, list)):
        if len(example) > len(names):
            raise ModelSourceError(f"{ref}: {len(example)} example inputs for forward({', '.join(names)})")
        items = list(zip(names, example, strict=False))
    else:
        raise ModelSourceError(f"{ref}: example_inputs must be a tensor, tuple or dict, got {type(example).__name__}")
    out: dict[str, np.ndarray] = {}
    for k, v in items:
        if not isinstance(v, torch.Tensor):
            raise ModelSourceError(f"{ref}: example input {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v.detach().cpu().numpy()
    return out


def state_hash(module: torch.nn.Module) -> str:
    parts = []
    for k, v in module.state_dict().items():
        parts.append(k.encode())
        parts.append(v.detach().cpu().contiguous().numpy().tobytes())
    return sha256_bytes(b"".join(parts))
