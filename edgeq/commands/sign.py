"""``edgeq sign``: ed25519-sign OUTDIR/edgeq.json so `edgeq check --public-key` can verify provenance."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeq.integrity import audit
from edgeq.manifest import read_manifest
from edgeq.signing import sign_folder


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sign", help="sign an export folder's manifest with an ed25519 key",
                       description="Write OUTDIR/edgeq.json.sig, an ed25519 signature of edgeq.json. The manifest "
                                   "holds the sha256 of every file, so the signature covers the whole folder; "
                                   "`edgeq check OUTDIR --public-key KEY.pub` verifies it.",
                       epilog="keys: openssl genpkey -algorithm ed25519 -out key.pem; "
                              "openssl pkey -in key.pem -pubout -out key.pub")
    p.add_argument("outdir", type=Path, metavar="OUTDIR")
    p.add_argument("--private-key", type=Path, required=True, metavar="PEM", help="ed25519 private key (PEM)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    audit(read_manifest(args.outdir), args.outdir)  # never sign a folder that already fails its own hashes
    print(f"signed: {sign_folder(args.outdir, args.private_key)}")
    return 0
