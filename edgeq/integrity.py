"""What ``check`` trusts: the bytes in the folder, never the manifest's word about them.

``seal`` (at export) lists every file of the output folder that the manifest does not already describe (reports,
configs) with its sha256, so that nothing the verdict or a reader depends on can change unnoticed. ``audit`` (at
check) confines every path to the folder (relative, no ``..``, no symlinks anywhere), re-hashes every file and
fails on a missing or an unlisted one. ``sniff_format`` recomputes an artifact's format from its magic bytes.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import replace
from pathlib import Path, PurePosixPath

import onnx

from edgeq.errors import ManifestError
from edgeq.hashing import sha256_file
from edgeq.manifest import MANIFEST_NAME, FileEntry, Manifest

SIGNATURE_NAME = "edgeq.json.sig"  # signs the manifest, so it cannot be listed in it (edgeq.signing)
RUNNABLE = ("onnx", "ort", "pte")  # formats a runner executes: never skipped by check, whatever the manifest says
_REL = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")
_HINT = "the folder changed after export; re-run edgeq export (or restore the original folder)"


def described_paths(m: Manifest) -> list[tuple[object, object]]:
    """(relative path, sha256) of every file the manifest lists, as written there (:func:`audit` checks them)."""
    out: list[tuple[object, object]] = [(a["path"], a["sha256"]) for a in m.artifacts]
    vd = m.validation_data
    out += [(vd.inputs.path, vd.inputs.sha256), (vd.reference.path, vd.reference.sha256)]
    out += [(f.path, f.sha256) for f in m.files or ()]
    return out


def seal(m: Manifest, outdir: Path) -> Manifest:
    """``m`` with every regular file under ``outdir`` not listed yet (reports, …) in its ``files``."""
    listed = {p for p, _ in described_paths(replace(m, files=None))}
    extra: list[FileEntry] = []
    for rel in sorted(_walk(outdir)):
        if rel not in (MANIFEST_NAME, SIGNATURE_NAME) and rel not in listed:
            p = outdir / rel
            extra.append(FileEntry(rel, p.stat().st_size, sha256_file(p)))
    return replace(m, files=tuple(extra))


def _walk(outdir: Path) -> list[str]:
    """Relative POSIX paths of all entries under ``outdir``; a symlink anywhere is an error."""
    out = []
    for root, dirs, files in os.walk(outdir, followlinks=False):
        for name in [*dirs, *files]:
            p = Path(root, name)
            rel = p.relative_to(outdir).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                raise ManifestError(f"{rel} in {outdir} is a symbolic link", "artifacts must be regular files in "
                                    "the output folder; symlinks could point anywhere")
            if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
                raise ManifestError(f"{rel} in {outdir} is not a regular file", _HINT)
            if stat.S_ISREG(st.st_mode):
                out.append(rel)
    return out


def confined(outdir: Path, rel: object, what: str) -> Path:
    """``outdir / rel`` after checking that ``rel`` is a plain relative path to a regular file, no symlink on
    the way."""
    if not isinstance(rel, str) or not _REL.match(rel) or any(part in ("", ".", "..") for part in rel.split("/")):
        raise ManifestError(f"{what}: path {rel!r} is not a plain relative path inside the folder",
                            "paths in edgeq.json must be relative, without '..', absolute parts or odd characters")
    cur = outdir
    for part in PurePosixPath(rel).parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            raise ManifestError(f"{rel} is listed in {MANIFEST_NAME} but missing from {outdir}", _HINT) from None
        if stat.S_ISLNK(st.st_mode):
            raise ManifestError(f"{what}: {rel} is a symbolic link", "artifacts must be regular files in the folder")
    if not stat.S_ISREG(os.lstat(cur).st_mode):
        raise ManifestError(f"{what}: {rel} is not a regular file", _HINT)
    return cur


def audit(m: Manifest, outdir: Path) -> None:
    """Confine, re-hash, and compare the folder's listing with the manifest's. Raises ManifestError."""
    manifest = outdir / MANIFEST_NAME
    if manifest.is_symlink():
        raise ManifestError(f"{manifest} is a symbolic link", "check the real export folder")
    entries = described_paths(m)
    seen: set[object] = set()
    for rel, digest in entries:
        p = confined(outdir, rel, MANIFEST_NAME)
        if rel in seen:
            raise ManifestError(f"{rel} is listed twice in {MANIFEST_NAME}", _HINT)
        seen.add(rel)
        actual = sha256_file(p)
        if not isinstance(digest, str) or actual != digest:
            raise ManifestError(f"{rel}: sha256 {actual[:12]}… does not match the manifest's {str(digest)[:12]}…",
                                _HINT)
    unlisted = [rel for rel in _walk(outdir) if rel not in (MANIFEST_NAME, SIGNATURE_NAME) and rel not in seen]
    if unlisted:
        old = m.files is None
        raise ManifestError(f"{len(unlisted)} file(s) in {outdir} are not listed in {MANIFEST_NAME}: "
                            f"{', '.join(unlisted[:5])}",
                            "this folder was written by an edgeq without file hashes; re-export it" if old else
                            "nothing may be added to an export folder; " + _HINT)


def sniff_format(path: Path) -> str:
    """The artifact's format from its bytes: onnx, ort, pte, bpte, or 'unknown'."""
    with path.open("rb") as f:
        head = f.read(16)
    if head[4:8] == b"ORTM":
        return "ort"
    if head[4:6] == b"ET":
        return "pte"
    if head[4:6] == b"BP":
        return "bpte"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any parse failure means "not ONNX"
        return "unknown"
    return "onnx" if len(model.graph.node) or len(model.graph.output) else "unknown"
