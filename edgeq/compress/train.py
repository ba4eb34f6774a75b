"""The fine-tune every compression method runs: distillation from the float model, AdamW, cosine schedule.

Loss = T²·KL(teacher ‖ student) at temperature T on logits (or MSE for outputs that are not class scores), plus
cross-entropy when the training data has labels. ``--train-fn pkg.mod:fn`` replaces the loop with the user's
``fn(model, step_budget) -> None``. Runs are reproducible for a given ``--seed``: one seeded generator draws the
batches, torch's global seed is set, deterministic algorithms are forced and torch runs one thread for the duration.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.compress.spec import TrainOptions
from edgeq.data import Dataset, load_dataset
from edgeq.errors import DataError, ModelSourceError, UsageError
from edgeq.jsontypes import JSONObject
from edgeq.progress import Progress
from edgeq.source import import_factory

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TrainSet:
    """Training inputs as torch tensors in forward() order, optional labels, and where they came from."""

    inputs: tuple[torch.Tensor, ...]
    labels: torch.Tensor | None
    source: str

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        return tuple(t[idx] for t in self.inputs), (None if self.labels is None else self.labels[idx])


def load_train_set(path: str | None, fallback: Dataset, input_names: list[str]) -> TrainSet:
    """``--train-data`` (or the calibration data when none is given), checked against the model's inputs."""
    import torch  # heavy: torch, imported only where a model is built or run

    ds = load_dataset(path) if path else fallback
    missing = [n for n in input_names if n not in ds.inputs]
    if missing:
        raise DataError(f"{ds.source}: training data lacks input(s) {missing} (has {sorted(ds.inputs)})",
                        "key the arrays by the model's forward() argument names, as for --calib")
    tensors = []
    for n in input_names:
        arr = np.ascontiguousarray(ds.inputs[n])
        if arr.dtype == np.float64 or arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        tensors.append(torch.from_numpy(arr.copy()))
    labels = None
    if ds.labels is not None:
        if ds.labels.dtype.kind not in "iu":
            raise DataError(f"{ds.source}: labels must be integer class ids, got {ds.labels.dtype}")
        labels = torch.from_numpy(ds.labels.astype(np.int64))
    return TrainSet(tuple(tensors), labels, ds.source)


def first_tensor(out: object) -> torch.Tensor:
    """The model's main output: the tensor itself, the first of a tuple/list, or the first value of a dict."""
    import torch  # heavy: torch, imported only where a model is built or run

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return first_tensor(out[0])
    if isinstance(out, dict) and out:
        return first_tensor(next(iter(out.values())))
    if hasattr(out, "to_tuple"):
        return first_tensor(out.to_tuple())
    raise UsageError(f"cannot fine-tune: the model returned a {type(out).__name__}", "return a tensor of logits")


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded, deterministic-kernel region; the caller's global torch settings are restored afterwards."""
    import torch  # heavy: torch, imported only where a model is built or run

    was = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # One thread: CPU reductions then sum in a fixed order whatever the machine's core count, and small-batch
    # training does not stall on thread hand-offs when other processes share the cores.
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None, temperature: float,
                 kind: str = "auto") -> torch.Tensor:
    """``kl`` for class scores, ``mse`` for embeddings / regression; ``auto``: KL for 2-D (batch, classes) outputs."""
    # heavy: torch, imported only where a model is built or run
    import torch.nn.functional as F  # noqa: N812

    if kind == "kl" or (kind == "auto" and student.dim() == 2 and student.shape[-1] > 1):
        t = temperature
        loss = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), reduction="batchmean",
                        log_target=True) * (t * t)
    else:
        loss = F.mse_loss(student, teacher)
    if labels is not None and student.dim() == 2:
        loss = loss + F.cross_entropy(student, labels)
    return loss


def user_train_fn(ref: str) -> Callable[[torch.nn.Module, int], None]:
    try:
        fn = import_factory(ref)
    except ModelSourceError as e:
        raise UsageError(f"--train-fn {ref}: {e.cause}", "pass pkg.module:function taking (model, step_budget)") from e

    def train(model: torch.nn.Module, steps: int) -> None:
        fn(model, steps)  # the user's function: what it returns is not used

    return train


@dataclass
class Trainer:
    """Fine-tunes a student against the frozen float teacher; one instance per compression run."""

    teacher: torch.nn.Module
    data: TrainSet
    options: TrainOptions
    progress: Progress

    @classmethod
    def create(cls, model: torch.nn.Module, data: TrainSet, options: TrainOptions, progress: Progress) -> Trainer:
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return cls(teacher, data, options, progress)

    def teacher_logits(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        import torch  # heavy: torch, imported only where a model is built or run

        with torch.no_grad():
            return first_tensor(self.teacher(*inputs))

    def fine_tune(self, model: torch.nn.Module, steps: int, desc: str, *, train_mode: Callable[[torch.nn.Module, bool], None] | None = None,
                  after_step: Callable[[torch.nn.Module], None] | None = None) -> JSONObject:
        """Run ``steps`` optimizer steps on ``model`` (in place). Returns the first and last loss."""
        import torch  # heavy: torch, imported only where a model is built or run

        if steps <= 0:
            return {"steps": 0}
        if self.options.fn:
            fn = user_train_fn(self.options.fn)
            with deterministic(self.options.seed):
                fn(model, steps)
            return {"steps": steps, "train_fn": self.options.fn}
        set_mode = train_mode or (lambda m, on: m.train(on))
        params = [p for p in model.parameters() if p.requires_grad and p.dtype.is_floating_point]
        if not params:
            return {"steps": 0, "note": "no trainable parameters"}
        first = last = math.nan
        with deterministic(self.options.seed):
            opt = torch.optim.AdamW(params, lr=self.options.lr, weight_decay=0.0)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            gen = torch.Generator().manual_seed(self.options.seed)
            n = len(self.data)
            bs = min(self.options.batch_size, n)
            set_mode(model, True)
            with self.progress.bar(steps, desc, unit="step") as bar:
                for step in range(steps):
                    idx = torch.randint(0, n, (bs,), generator=gen)
                    inputs, labels = self.data.batch(idx)
                    target = self.teacher_logits(inputs)
                    loss = distill_loss(first_tensor(model(*inputs)), target, labels, self.options.temperature,
                                        self.options.distill)
                    if not torch.isfinite(loss):
                        raise UsageError(f"fine-tuning diverged at step {step} (loss {loss.item()})",
                                         "lower --train-lr or check the training data")
                    opt.zero_grad(set_to_none=True)
                    torch.autograd.backward(loss)  # loss.backward(): Tensor.backward is unannotated in torch
                    opt.step()
                    sched.step()
                    if after_step is not None:
                        after_step(model)
                    if step == 0:
                        first = float(loss.item())
                    last = float(loss.item())
                    bar.update(1)
                    bar.set_postfix_str(f"loss {last:.4f}")
            set_mode(model, False)
        return {"steps": steps, "first_loss": first, "last_loss": last}

    def agreement(self, model: torch.nn.Module, limit: int = 512) -> float:
        """Top-1 agreement (or cosine for non-logit outputs) with the teacher on the training data."""
        import torch  # heavy: torch, imported only where a model is built or run

        n = min(limit, len(self.data))
        inputs, _ = self.data.batch(torch.arange(n))
        model.eval()
        with torch.no_grad():
            s = first_tensor(model(*inputs))
            t = self.teacher_logits(inputs)
        if s.dim() == 2 and s.shape[-1] > 1 and self.options.distill != "mse":
            return float((s.argmax(-1) == t.argmax(-1)).float().mean())
        return float(torch.nn.functional.cosine_similarity(s.flatten(1), t.flatten(1)).mean())

    def divergence(self, model: torch.nn.Module, limit: int = 256) -> float:
        """Distillation loss without labels: how far ``model`` is from the teacher (for sensitivity)."""
        import torch  # heavy: torch, imported only where a model is built or run

        n = min(limit, len(self.data))
        inputs, _ = self.data.batch(torch.arange(n))
        model.eval()
        with torch.no_grad():
            return float(distill_loss(first_tensor(model(*inputs)), self.teacher_logits(inputs), None,
                                      self.options.temperature, self.options.distill))
