"""Load a ``.pt2`` (torch.export.save) archive without ever running pickle.

``torch.export.load`` reaches ``pickle`` three ways: weights or constants stored with ``use_pickle``, the sample
inputs (``torch.load`` with a ``weights_only=False`` fallback) and the legacy-format fallback; an archive can also
carry AOTInductor shared libraries. A crafted file can therefore run code on load. Here the zip members are
inspected first: only the plain members of a torch.export archive (JSON graph and configs, raw tensor bytes) are
kept, the sample inputs are dropped (edgeq feeds its own calibration data), and anything pickle-backed or unknown is
refused, unless the user passes ``--trust-pickle`` for a file they produced themselves.
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgeq.errors import ArtifactError, ModelSourceError

if TYPE_CHECKING:
    import torch

TRUST_HINT = "re-save it with torch.export.save from a current torch, or pass --trust-pickle if you made the file " \
             "yourself (pickle can run arbitrary code)"

# Members of a torch.export archive that carry no pickle, relative to the archive's root folder.
_PLAIN = re.compile(r"^(archive_format|archive_version|byteorder|version|\.data/version|\.data/serialization_id"
                    r"|models/[^/]+\.json|data/weights/[^/]+|data/constants/[^/]+|extra/[^/]+)$")
_SAMPLE_INPUTS = re.compile(r"^data/sample_inputs/[^/]+\.pt$")
_CONFIG = re.compile(r"^data/(weights|constants)/[^/]+_config\.json$")
_MAX_CONFIG_BYTES = 64 << 20


# What torch.save writes for a tuple/dict of plain tensors; anything else in the sample inputs is a payload.
_TENSOR_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                   ("collections", "OrderedDict"), ("torch", "Size"), ("torch", "device")}


def _tensor_global(module: str, name: str) -> bool:
    return (module, name) in _TENSOR_GLOBALS or (module == "torch" and name.endswith("Storage")
                                                 and name.isidentifier())


def sample_inputs_findings(blob: bytes, where: str) -> list[str]:
    """Static scan (pickletools parses opcodes, it never executes them) of a torch.save blob's pickles."""
    if not blob:
        return []
    try:
        inner = zipfile.ZipFile(io.BytesIO(blob))
        pickles = [n for n in inner.namelist() if n.endswith(".pkl")]
        found = []
        for n in pickles:
            for op, arg, _ in pickletools.genops(inner.read(n)):
                if op.name == "GLOBAL":
                    module, _, name = str(arg).partition(" ")
                    if not _tensor_global(module, name):
                        found.append(f"{where}: pickle calls {module}.{name}")
                elif op.name in ("STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"):
                    found.append(f"{where}: pickle uses {op.name}")
        return found
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        return [f"{where}: not a torch.save archive of tensors ({e})"]


def _root_and_rel(name: str) -> tuple[str, str]:
    head, _, rel = name.partition("/")
    return head, rel


def pickle_findings(path: Path) -> tuple[zipfile.ZipFile, list[str]]:
    """Open the archive and list every reason it would need pickle (empty: safe to load)."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArtifactError(f"{path}: not a loadable ExportedProgram (not a torch.export zip archive: {e})",
                            "save it with torch.export.save(torch.export.export(model, args), path)") from e
    findings: list[str] = []
    roots = {_root_and_rel(i.filename)[0] for i in z.infolist()}
    if len(roots) != 1:
        findings.append(f"{len(roots)} top-level folders (a torch.export archive has one)")
    for info in z.infolist():
        _, rel = _root_and_rel(info.filename)
        if info.is_dir():
            continue
        if _SAMPLE_INPUTS.match(rel):
            if info.file_size > _MAX_CONFIG_BYTES:
                findings.append(f"{info.filename}: sample inputs of {info.file_size} bytes")
            else:
                findings += sample_inputs_findings(z.read(info.filename), info.filename)
            continue
        if not _PLAIN.match(rel):
            findings.append(f"member {info.filename!r} is not a plain torch.export member (pickle, legacy format "
                            "or compiled code)")
            continue
        if _CONFIG.match(rel):
            if info.file_size > _MAX_CONFIG_BYTES:
                findings.append(f"{info.filename}: config of {info.file_size} bytes")
                continue
            try:
                cfg = json.loads(z.read(info.filename)).get("config", {})
            except (ValueError, AttributeError):
                findings.append(f"{info.filename}: not a JSON object")
                continue
            for fqn, entry in (cfg.items() if isinstance(cfg, dict) else []):
                if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
                    findings.append(f"{info.filename}: {fqn!r} is stored with pickle")
    if not any(_root_and_rel(i.filename)[1].startswith("models/") for i in z.infolist()):
        findings.append("no models/*.json graph (legacy or foreign format, loaded with pickle)")
    return z, findings


def load_exported_program(path: Path, trust_pickle: bool = False) -> torch.export.ExportedProgram:
    """torch.export.load on a copy of the archive that holds only plain members; see the module docstring."""
    import torch  # heavy: torch, imported only where a model is built or run

    if not path.is_file():
        raise ModelSourceError(f"model file not found: {path}", "check the path")
    z, findings = pickle_findings(path)
    with z:
        if findings and not trust_pickle:
            more = f" (+{len(findings) - 3} more)" if len(findings) > 3 else ""
            raise ModelSourceError(f"{path}: refusing to load a pickle-backed archive: "
                                   f"{'; '.join(findings[:3])}{more}", TRUST_HINT)
        if findings:
            print(f"edgeq: warning: --trust-pickle: loading {path} with pickle ({findings[0]}); this runs any code "
                  "the file contains", file=sys.stderr)
            source: str | io.BytesIO = str(path)
        else:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as out:
                for info in z.infolist():
                    if info.is_dir():
                        continue
                    rel = _root_and_rel(info.filename)[1]
                    # Empty sample inputs deserialize to {} without touching torch.load.
                    out.writestr(info.filename, b"" if _SAMPLE_INPUTS.match(rel) else z.read(info.filename))
            buf.seek(0)
            source = buf
    try:
        return torch.export.load(source)
    except Exception as e:
        raise ArtifactError(f"{path}: not a loadable ExportedProgram ({type(e).__name__}: {str(e)[:200]})",
                            "save it with torch.export.save(torch.export.export(model, args), path)") from e
