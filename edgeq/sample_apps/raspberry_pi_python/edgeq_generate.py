#!/usr/bin/env python3
"""On-device text generation from an edgeq LM export: greedy decoding through the ONNX model's KV cache.

Depends on numpy + onnxruntime only (``pip install numpy onnxruntime``; add ``tokenizers`` to type prompts as
text). It:
  1. reads ``edgeq.json``, refuses a folder whose verdict failed (unless --allow-failed) and picks the ONNX
     variant the export chose (``details.pick``) or --variant NAME,
  2. checks the sha256 of the graph and its weights file against the manifest before loading them,
  3. takes the I/O names from the model and ``genai_config.json`` (input_ids, attention_mask, position_ids,
     past_key_values.N.key/.value -> logits, present.N.key/.value), starts from an empty past (the prefill) and
     feeds one token per step with the cache,
  4. decodes tokens with ``tokenizer.json``'s vocabulary itself (byte-level BPE as in GPT-2 / Llama-3 / Qwen2, or
     SentencePiece pieces with byte fallback as in Llama-2), so it needs no tokenizer library to print text.

Usage:
  python3 edgeq_generate.py EXPORT_DIR --prompt "The for statement" --max-new-tokens 40   # needs `tokenizers`
  python3 edgeq_generate.py EXPORT_DIR --prompt-ids 464,329,2643 --print-ids               # no tokenizer library
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pick_variant(manifest: dict, name: str | None) -> dict:
    onnx = [a for a in manifest["artifacts"] if a["format"] == "onnx"]
    if name:
        onnx = [a for a in onnx if a["name"] == name]
    else:
        onnx.sort(key=lambda a: not (a.get("details") or {}).get("pick"))  # the budget's pick first
    if not onnx:
        raise SystemExit(f"edgeq_generate: no ONNX language model {name or ''} in this export "
                         "(exported with --format pte only?)")
    return onnx[0]


def verify(export_dir: Path, manifest: dict, art: dict) -> Path:
    """The graph's sha256 is the artifact's; its weights (model.onnx.data) are in the manifest's file list."""
    graph = export_dir / art["path"]
    digests = {f["path"]: f["sha256"] for f in manifest.get("files") or []}
    digests[art["path"]] = art["sha256"]
    folder = graph.parent
    for p in sorted(folder.glob("model.onnx*")):
        rel = p.relative_to(export_dir).as_posix()
        if digests.get(rel) != sha256(p):
            print(f"edgeq_generate: {rel} does not match edgeq.json (sha256); re-copy the export folder",
                  file=sys.stderr)
            raise SystemExit(2)
    return folder


class Decoder:
    """Token ids -> text from tokenizer.json's vocabulary, without the tokenizers library."""

    def __init__(self, tokenizer_json: Path) -> None:
        tj = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        vocab = dict(tj["model"]["vocab"])
        for t in tj.get("added_tokens") or []:
            vocab[t["content"]] = t["id"]
        self.special = {t["id"] for t in tj.get("added_tokens") or [] if t.get("special")}
        self.pieces = {i: s for s, i in vocab.items()}
        self.byte_level = "ByteLevel" in json.dumps(tj.get("decoder") or tj.get("pre_tokenizer") or {})
        # GPT-2's printable stand-ins for the 256 byte values (the inverse of bytes_to_unicode)
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.unbyte = {chr(c): b for b, c in zip(bs, cs)}

    def bytes_of(self, token: int) -> bytes:
        if token in self.special:
            return b""
        piece = self.pieces.get(token, "")
        if self.byte_level:
            return bytes(self.unbyte[c] for c in piece if c in self.unbyte)
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:  # SentencePiece byte fallback
            return bytes([int(piece[3:5], 16)])
        return piece.replace("\u2581", " ").encode("utf-8")

    def decode(self, tokens: list[int]) -> str:
        return b"".join(self.bytes_of(t) for t in tokens).decode("utf-8", errors="replace")


class KvCacheLM:
    """The onnxruntime-genai layout, fed the way onnxruntime-genai feeds it."""

    def __init__(self, folder: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        cfg = json.loads((folder / "genai_config.json").read_text())["model"]
        dec = cfg["decoder"]
        self.eos = set(cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]])
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in self.sess.get_inputs()}
        ins = dec["inputs"]
        self.ids_name, self.mask_name = ins["input_ids"], ins["attention_mask"]
        self.pos_name = ins.get("position_ids") if ins.get("position_ids") in names else None
        layers = int(dec["num_hidden_layers"])
        self.past = [(ins["past_key_names"] % i, ins["past_value_names"] % i) for i in range(layers)]
        outs = dec["outputs"]
        self.present = [(outs["present_key_names"] % i, outs["present_value_names"] % i) for i in range(layers)]
        self.logits_name = outs["logits"]
        self.kv_shape = (1, int(dec["num_key_value_heads"]), 0, int(dec["head_size"]))

    def generate(self, prompt: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> list[int]:
        empty = np.zeros(self.kv_shape, dtype=np.float32)  # an empty past: the first call is the prefill
        cache = {n: empty for pair in self.past for n in pair}
        feed_ids, start, out = list(prompt), 0, []
        fetch = [self.logits_name] + [n for pair in self.present for n in pair]
        for _ in range(max_new_tokens):
            t = len(feed_ids)
            feeds = {self.ids_name: np.array([feed_ids], dtype=np.int64),
                     self.mask_name: np.ones((1, start + t), dtype=np.int64), **cache}
            if self.pos_name:
                feeds[self.pos_name] = np.arange(start, start + t, dtype=np.int64)[None]
            res = self.sess.run(fetch, feeds)
            for (pk, pv), k, v in zip(self.past, res[1::2], res[2::2]):
                cache[pk], cache[pv] = k, v
            token = int(res[0][0, -1].argmax())
            out.append(token)
            if stop_at_eos and token in self.eos:
                break
            start, feed_ids = start + t, [token]
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text (needs the `tokenizers` package to encode it)")
    src.add_argument("--prompt-ids", help="prompt as comma-separated token ids (no tokenizer library needed)")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--variant", help="ONNX variant name from edgeq.json (default: the export's pick)")
    ap.add_argument("--print-ids", action="store_true", help="also print the generated token ids")
    ap.add_argument("--ignore-eos", action="store_true", help="generate --max-new-tokens even past end-of-text")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    ap.add_argument("--allow-failed", action="store_true", help="run even if the export's verdict failed")
    args = ap.parse_args(argv)

    manifest = json.loads((args.export_dir / "edgeq.json").read_text())
    if (manifest.get("signature") or {}).get("task") != "text-generation":
        print("edgeq_generate: this export is not a language model (use edgeq_app.py)", file=sys.stderr)
        return 2
    if not manifest["verdict"]["passed"] and not args.allow_failed:
        print("edgeq_generate: this export FAILED its perplexity budget:", *manifest["verdict"]["failures"],
              sep="\n  ", file=sys.stderr)
        return 1
    art = pick_variant(manifest, args.variant)
    folder = verify(args.export_dir, manifest, art)
    tok_json = args.export_dir / (manifest.get("llm") or {}).get("tokenizer", "tokenizer") / "tokenizer.json"
    if not tok_json.is_file():
        tok_json = folder / "tokenizer.json"
    if args.prompt is not None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            print("edgeq_generate: --prompt needs `pip install tokenizers`; or pass --prompt-ids", file=sys.stderr)
            return 2
        prompt = Tokenizer.from_file(str(tok_json)).encode(args.prompt).ids
    else:
        prompt = [int(x) for x in args.prompt_ids.split(",") if x.strip()]
    if not prompt:
        print("edgeq_generate: the prompt is empty", file=sys.stderr)
        return 2
    lm = KvCacheLM(folder, args.threads)
    tokens = lm.generate(prompt, args.max_new_tokens, stop_at_eos=not args.ignore_eos)
    text = Decoder(tok_json).decode(tokens)
    print(f"{art['name']} ({art['precision']}): {len(prompt)} prompt + {len(tokens)} generated tokens",
          file=sys.stderr)
    if args.print_ids:
        print("ids:", ",".join(map(str, tokens)))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
