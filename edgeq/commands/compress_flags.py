"""``--compress`` and the fine-tune flags, shared by ``export`` and ``sweep``."""

from __future__ import annotations

import argparse

from edgeq.compress.spec import CompressOptions, TrainOptions, parse_spec

COMPRESS_HELP = (
    "compression before quantization, applied in the order given, e.g. prune:0.3,lowrank:0.9,cluster:16,qat. "
    "prune:R removes R of the conv channels / linear rows (structured: smaller and faster everywhere); "
    "sparse:R zeroes R of each layer's weights (smaller download only: dense runtimes do not get faster); "
    "lowrank:E factorises Linear / 1x1 Conv by SVD keeping energy E; cluster:K snaps each layer to K shared "
    "values (palette; runtimes get dequantized weights); qat trains under INT8 fake quantization, qat:4 with "
    "4-bit weights (last; both formats ship the trained ranges; --train-steps 0 = calibrate only, i.e. PTQ). "
    "Each is fine-tuned by distillation from the float model, which stays the validation reference.")


def add_compress_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("compression beyond PTQ (needs a pkg.module:factory model)")
    g.add_argument("--compress", metavar="METHOD[:LEVEL][,...]", help=COMPRESS_HELP)
    g.add_argument("--train-data", metavar="FILE",
                   help="fine-tuning data (.npz: model inputs, optional `labels`); default: --calib. Without "
                        "labels the fine-tune distils from the float model only")
    g.add_argument("--train-steps", type=int, default=TrainOptions.steps, metavar="N",
                   help=f"fine-tune steps per method (default {TrainOptions.steps}; 0 = no fine-tune)")
    g.add_argument("--train-batch", type=int, default=TrainOptions.batch_size, metavar="N")
    g.add_argument("--train-lr", type=float, default=TrainOptions.lr, metavar="LR",
                   help=f"AdamW peak learning rate, cosine-annealed (default {TrainOptions.lr:g})")
    g.add_argument("--distill-loss", choices=("auto", "kl", "mse"), default="auto",
                   help="distillation loss: kl on class scores, mse for embeddings (default auto: kl for 2-D outputs)")
    g.add_argument("--train-fn", metavar="PKG.MOD:FN",
                   help="your own fine-tune, called as FN(model, step_budget) instead of the built-in loop")


def compress_from(args: argparse.Namespace) -> CompressOptions:
    train = TrainOptions(data=args.train_data, steps=args.train_steps, batch_size=args.train_batch, lr=args.train_lr,
                         fn=args.train_fn, seed=args.seed,
                         distill=args.distill_loss)
    return CompressOptions(parse_spec(args.compress or ""), train)
