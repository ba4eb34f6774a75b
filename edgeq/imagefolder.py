"""A folder of images as calibration / evaluation data, with the preprocessing recorded in the manifest so that
apps feed the model exactly what it was calibrated and validated on.

Layouts: ``DATA/*.png|jpg|...`` (no labels) or ``DATA/CLASS/*.png`` (one folder per class; labels are the class
folders' indices in sorted order, recorded as ``classes``). Steps, in order: decode as RGB (or L with
``channels=1``), resize the shorter side to ``resize`` (bilinear), centre-crop to ``crop``, scale to [0, 1], subtract
``mean`` and divide by ``std`` per channel, lay out as NCHW or NHWC, cast to ``dtype`` (uint8 skips scaling and
normalisation: raw pixels for models that normalise inside)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeq.errors import DataError
from edgeq.jsontypes import JSONObject

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_IMAGES = 10_000


@dataclass(frozen=True)
class Preprocess:
    resize: int | None = None  # shorter side, px
    crop: tuple[int, int] | None = None  # (height, width), centre crop
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    dtype: str = "float32"
    channels: int = 3

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise DataError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.dtype not in ("float32", "uint8"):
            raise DataError(f"image dtype must be float32 or uint8, got {self.dtype!r}")
        if self.channels not in (1, 3):
            raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, self.channels):
                raise DataError(f"--{name} has {len(v)} values for {self.channels} channel(s)",
                                "give one value, or one per channel (e.g. 0.485,0.456,0.406)")
        if any(s == 0 for s in self.std):
            raise DataError("--std must not contain 0")
        if self.resize is not None and self.resize < 1:
            raise DataError(f"--resize must be >= 1, got {self.resize}")
        if self.crop is not None and min(self.crop) < 1:
            raise DataError(f"--crop must be >= 1, got {self.crop}")

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["crop"] = list(self.crop) if self.crop else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["scale"] = 1.0 if self.dtype == "uint8" else 1 / 255
        d["order"] = ["decode", "resize", "crop", "scale", "normalize", "layout", "dtype"]
        return d


def is_image_folder(p: Path) -> bool:
    if not p.is_dir():
        return False
    files = [f for f in p.iterdir() if f.is_file()]
    if any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
        return True
    return any(f.suffix.lower() in IMAGE_SUFFIXES for d in p.iterdir() if d.is_dir() for f in d.iterdir())


def _images(p: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    top = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if top and classes:
        raise DataError(f"{p}: holds both images and class folders ({', '.join(classes[:3])})",
                        "use DATA/*.png (no labels) or DATA/CLASS/*.png (labels from folder names), not both")
    if top:
        return top, None, []
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((p / c).iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(i)
    if not files:
        raise DataError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files, labels, classes


def _one(f: Path, spec: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # Pillow only for image-folder DATA

    try:
        with Image.open(f) as im:
            img = im.convert("L" if spec.channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{f}: not a readable image ({e})", "remove or re-encode the file") from e
    if spec.resize:
        w, h = img.size
        k = spec.resize / min(w, h)
        img = img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR)
    if spec.crop:
        ch, cw = spec.crop
        w, h = img.size
        if ch > h or cw > w:
            raise DataError(f"{f}: {w}×{h} image is smaller than the {cw}×{ch} crop", "use --resize first")
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return np.asarray(img, dtype=np.uint8).reshape(img.size[1], img.size[0], spec.channels)


def load_image_folder(p: Path, spec: Preprocess, input_name: str) -> tuple[dict[str, np.ndarray], np.ndarray | None,
                                                                          list[str]]:
    """(inputs keyed by ``input_name``, labels or None, class names)."""
    files, labels, classes = _images(p)
    if len(files) > MAX_IMAGES:
        files = files[:MAX_IMAGES]
        labels = labels[:MAX_IMAGES] if labels is not None else None
    arrays = [_one(f, spec) for f in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"{p}: images have different sizes {sorted(shapes)[:3]}",
                        "pass --resize and --crop so every image comes out the same size")
    x = np.stack(arrays)  # N, H, W, C uint8
    if spec.dtype == "float32":
        x = x.astype(np.float32) / 255.0
        x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x, dtype=spec.dtype)
    return {input_name: x}, (np.asarray(labels, np.int64) if labels is not None else None), classes
