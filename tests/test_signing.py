"""Optional provenance: `edgeq sign` + `edgeq check --public-key` catch a folder rewritten with fresh hashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeq.cli import main
from edgeq.hashing import sha256_file


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    priv, pub = folder / f"{name}.pem", folder / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def test_sign_then_check_and_tampering_with_fresh_hashes(tmp_path: Path, digits_export,  # type: ignore[no-untyped-def]
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "digits"
    shutil.copytree(digits_export.output, out)
    priv, pub = keypair(tmp_path, "team")
    _, other = keypair(tmp_path, "other")
    assert main(["-q", "check", str(out), "--public-key", str(pub)]) == 2  # not signed yet
    assert "has no edgeq.json.sig" in capsys.readouterr().err
    assert main(["-q", "sign", str(out), "--private-key", str(priv)]) == 0
    assert main(["-q", "check", str(out), "--public-key", str(pub)]) == 0
    assert main(["-q", "check", str(out), "--public-key", str(other)]) == 2
    # rewrite a report *and* its hash: integrity alone cannot see it, the signature does
    (out / "report.md").write_text("# all good\n")
    m = json.loads((out / "edgeq.json").read_text())
    next(f for f in m["files"] if f["path"] == "report.md")["sha256"] = sha256_file(out / "report.md")
    (out / "edgeq.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["-q", "check", str(out)]) == 0  # consistent hashes, no key asked for
    assert main(["-q", "check", str(out), "--public-key", str(pub)]) == 2
    assert "does not verify" in capsys.readouterr().err
