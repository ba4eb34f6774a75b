"""Ed25519 signatures of ``edgeq.json`` for teams that want provenance, not just integrity.

The manifest lists the sha256 of every file in the folder and ``check`` re-hashes them all, so a signature over
the manifest's bytes covers the whole folder. Without one, an attacker who rewrites files *and* hashes together
goes unnoticed; with ``edgeq check --public-key``, that needs the private key.
"""

from __future__ import annotations

import base64
from pathlib import Path

from edgeq.errors import ManifestError, UsageError
from edgeq.integrity import SIGNATURE_NAME
from edgeq.manifest import MANIFEST_NAME


def _read_key(path: Path, private: bool) -> object:
    # cryptography only to sign or verify a manifest
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        data = Path(path).read_bytes()
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"cannot read the {'private' if private else 'public'} key {path}: {str(e)[:200]}",
                         "use a PEM ed25519 key (openssl genpkey -algorithm ed25519 -out key.pem; "
                         "openssl pkey -in key.pem -pubout -out key.pub)") from e
    want = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, want):
        raise UsageError(f"{path} is not an ed25519 key", "edgeq signs with ed25519 only")
    return key


def sign_folder(outdir: Path, private_key: Path) -> Path:
    """Write ``edgeq.json.sig`` (base64 ed25519 signature of edgeq.json's bytes); returns its path."""
    # cryptography only to sign or verify a manifest
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = _read_key(private_key, private=True)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError(f"{private_key} is not an ed25519 private key")
    manifest = Path(outdir) / MANIFEST_NAME
    if not manifest.is_file() or manifest.is_symlink():
        raise ManifestError(f"no {MANIFEST_NAME} in {outdir}", "sign a folder written by `edgeq export`")
    sig = Path(outdir) / SIGNATURE_NAME
    sig.write_text(base64.b64encode(key.sign(manifest.read_bytes())).decode() + "\n")
    return sig


def verify_folder(outdir: Path, public_key: Path) -> None:
    """Raise ManifestError unless ``edgeq.json.sig`` is a valid signature of edgeq.json by ``public_key``."""
    # cryptography only to sign or verify a manifest
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = _read_key(public_key, private=False)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError(f"{public_key} is not an ed25519 public key")
    sig = Path(outdir) / SIGNATURE_NAME
    if not sig.is_file() or sig.is_symlink():
        raise ManifestError(f"{outdir} has no {SIGNATURE_NAME}", "sign it with `edgeq sign OUTDIR --private-key KEY`")
    try:
        key.verify(base64.b64decode(sig.read_text().strip(), validate=True),
                   (Path(outdir) / MANIFEST_NAME).read_bytes())
    except (InvalidSignature, ValueError) as e:
        raise ManifestError(f"{SIGNATURE_NAME} does not verify with {public_key}: edgeq.json was changed or signed "
                            "by another key", "re-export and re-sign, or use the right public key") from e
