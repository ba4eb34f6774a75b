"""The aarch64 environment in the user cache: Debian arm64 packages + aarch64 wheels, verified by hash.

Layout under ``edgeq.emulator.env.root()`` (``$EDGEQ_EMULATOR_DIR`` or the user cache's ``emulator/``)::

  apt/                      a private apt state (arm64 package lists) — the host's dpkg/apt config is never changed
  downloads/debs/*.deb      arm64 .debs, each checked against the SHA256 of Debian's signed package index
  downloads/wheels/*.whl    aarch64 wheels, checked against the hashes pinned in WHEELS (pip --require-hashes)
  env-<key>/                the unpacked environment: sysroot/ (python3.11 + libs), site/ (numpy, onnxruntime),
                            executorch/ (lib, include, share of the aarch64 executorch wheel) and stamp.json
  cpuinfo/<model>.txt       synthesised ARM /proc/cpuinfo per CPU (see cpuinfo.py)

An environment is built in ``env-<key>.partial-*`` and renamed into place only after ``stamp.json`` (written last)
records every file's hash; a folder without a stamp is a half-finished set-up and is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeq.emulator.env import PYTHON, EmulatorEnv, find_qemu, root
from edgeq.emulator.fetch import (
    DEB_PACKAGES,
    WHEELS,
    Wheel,
    ensure_qemu,
    extract_deb,
    fetch_debs,
    fetch_wheels,
    unpack_wheel,
)
from edgeq.emulator.qemu import cpu_model, run_python
from edgeq.errors import EmulatorError
from edgeq.hashing import sha256_file
from edgeq.jsontypes import JSONObject, get_object_or_none, get_strs
from edgeq.progress import Progress
from edgeq.targetspec import Target

LAYOUT_VERSION = 1

# Files checked on every load (cheap); the whole tree is re-hashed by setup() and `status --verify`.
KEY_FILES = ("sysroot/usr/bin/python3.11", "sysroot/lib/ld-linux-aarch64.so.1")
SMOKE = "import numpy, onnxruntime, platform; print(platform.machine(), numpy.__version__, onnxruntime.__version__)"

def env_key() -> str:
    spec = {"layout": LAYOUT_VERSION, "debs": DEB_PACKAGES, "wheels": [(w.name, w.version, w.sha256, w.unpack)
                                                                        for w in WHEELS]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def env_dir() -> Path:
    return root() / f"env-{env_key()}"


# --- status / load ---------------------------------------------------------------------------------------

def _read_stamp(d: Path) -> JSONObject | None:
    try:
        s = json.loads((d / "stamp.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return s if isinstance(s, dict) and s.get("key") == env_key() else None


def _files(stamp: JSONObject) -> JSONObject:
    """The stamp's ``files``: relative path -> sha256 (or ``link:TARGET``)."""
    return get_object_or_none(stamp, "files", EmulatorError) or {}


def _quick_ok(d: Path, stamp: JSONObject) -> str | None:
    """None when the key files are present with their recorded hashes, else what is wrong."""
    files = _files(stamp)
    for rel in KEY_FILES:
        p = d / rel
        if not (p.is_file() or p.is_symlink()):
            return f"{rel} is missing"
        if files.get(rel) != _entry_hash(p):
            return f"{rel} does not match its recorded sha256"
    return None


def tree_hashes(d: Path) -> dict[str, str]:
    """sha256 of every regular file under ``d`` except the stamp (symlinks are recorded by target)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames.sort()
        for f in sorted(filenames):
            p = Path(dirpath, f)
            rel = str(p.relative_to(d))
            if rel == "stamp.json":
                continue
            out[rel] = _entry_hash(p)
    return out


def _entry_hash(p: Path) -> str:
    return "link:" + os.readlink(p) if p.is_symlink() else sha256_file(p)


def verify_tree(d: Path, stamp: JSONObject) -> list[str]:
    """Files added, missing or changed since set-up (empty = intact)."""
    want, have = _files(stamp), tree_hashes(d)
    bad = [f"missing {k}" for k in want if k not in have]
    bad += [f"changed {k}" for k in want if k in have and have[k] != want[k]]
    bad += [f"unexpected {k}" for k in have if k not in want]
    return bad


def status(verify: bool = False) -> JSONObject:
    """What is there: qemu, the environment, its stamp; ``verify`` re-hashes every file."""
    d = env_dir()
    stamp = _read_stamp(d) if d.is_dir() else None
    partial = sorted(p.name for p in root().glob(f"env-{env_key()}.partial-*"))
    st: JSONObject = {
        "qemu": find_qemu(), "cache": str(root()), "env": str(d), "key": env_key(),
        "ready": False, "half_finished": bool(partial) or (d.is_dir() and stamp is None), "problem": None,
    }
    if st["qemu"] is None:
        st["problem"] = "qemu-aarch64-static is not installed"
    if stamp is None:
        st["problem"] = st["problem"] or ("half-finished set-up (no completion stamp)" if st["half_finished"]
                                          else "not set up")
        return st
    st.update({"created": stamp.get("created"), "debs": stamp.get("debs"), "wheels": stamp.get("wheels"),
               "smoke_tested": stamp.get("smoke_tested", []), "setup_seconds": stamp.get("setup_seconds"),
               "files": len(_files(stamp)), "bytes": stamp.get("bytes")})
    problem = _quick_ok(d, stamp)
    if problem is None and verify:
        bad = verify_tree(d, stamp)
        problem = f"{len(bad)} file(s) differ from set-up: {', '.join(bad[:3])}" if bad else None
    st["problem"] = st["problem"] or problem
    st["ready"] = st["problem"] is None
    return st


def load() -> EmulatorEnv:
    """The ready environment, or an EmulatorError saying how to get one."""
    qemu = find_qemu()
    if qemu is None:
        raise EmulatorError("qemu-aarch64-static is not installed, so ARM kernels cannot be emulated",
                            "run `edgeq emulator setup` as root, or: sudo apt-get install -y qemu-user-static")
    d = env_dir()
    stamp = _read_stamp(d) if d.is_dir() else None
    if stamp is None:
        what = "is half-finished (no completion stamp)" if d.exists() else "is not set up"
        raise EmulatorError(f"the aarch64 emulator environment {what} ({d})",
                            "run `edgeq emulator setup` (downloads ~80 MB once into the user cache)")
    problem = _quick_ok(d, stamp)
    if problem:
        raise EmulatorError(f"the aarch64 emulator environment is damaged: {problem}",
                            "run `edgeq emulator setup` to rebuild it")
    return EmulatorEnv(d, qemu, stamp)


def is_ready() -> bool:
    try:
        load()
    except EmulatorError:
        return False
    return True


# --- setup -----------------------------------------------------------------------------------------------

def setup(target: Target | None = None, progress: Progress | None = None, force: bool = False) -> EmulatorEnv:
    """Prepare the environment (a no-op when it is intact) and smoke-test it on ``target``'s CPU model."""
    progress = progress or Progress(enabled=False)
    t0 = time.perf_counter()
    qemu = ensure_qemu(progress)
    with open(root() / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two set-ups (CI + a test) must not build into the same folders
        return _setup_locked(target, progress, force, qemu, t0)


def _setup_locked(target: Target | None, progress: Progress, force: bool, qemu: str, t0: float) -> EmulatorEnv:
    d = env_dir()
    stamp = _read_stamp(d) if d.is_dir() else None
    if stamp is not None and not force:
        bad = verify_tree(d, stamp)
        if not bad:
            env = EmulatorEnv(d, qemu, stamp)
            if target is not None and target.cpu.qemu_model not in get_strs(stamp, "smoke_tested", EmulatorError):
                _smoke(env, target, progress)
            progress.stage(f"emulator already set up at {d}")
            return env
        progress.stage(f"emulator environment changed since set-up ({bad[0]}, ...); rebuilding")
    elif d.exists():
        progress.stage("found a half-finished emulator set-up; redoing it")
    for old in root().glob(f"env-{env_key()}.partial-*"):
        shutil.rmtree(old, ignore_errors=True)

    debs = fetch_debs(progress)
    wheels = fetch_wheels(progress)
    tmp = Path(tempfile.mkdtemp(prefix=f"env-{env_key()}.partial-", dir=root()))
    try:
        progress.stage(f"unpacking {len(debs)} arm64 packages into the sysroot")
        (tmp / "sysroot").mkdir()
        for e in debs:
            extract_deb(root() / "downloads" / "debs" / e["file"], tmp / "sysroot")
        progress.stage("unpacking aarch64 wheels (onnxruntime, numpy, executorch runtime)")
        (tmp / "site").mkdir()
        for w in WHEELS:
            unpack_wheel(root() / "downloads" / "wheels" / _wheel_name(wheels, w), w, tmp / w.dest)
        # Byte-compile with the host's CPython 3.11 (same bytecode): emulated imports get ~3x faster, and
        # runs never write into the verified tree (PYTHONDONTWRITEBYTECODE at run time).
        progress.stage("byte-compiling the emulated python's libraries")
        # compileall exits non-zero when a file fails to compile (e.g. py2-only test data in a wheel): that file
        # is only slower to import, so it is not fatal, but it is reported instead of ignored.
        r = subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(tmp / "site"),
                            str(tmp / "sysroot" / "usr" / "lib" / PYTHON)], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            failed = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
            progress.stage(f"note: {len(failed)} line(s) of byte-compile errors (those modules import uncompiled): "
                           + " | ".join(failed[-3:])[:300])
        files = tree_hashes(tmp)
        stamp = {"key": env_key(), "layout": LAYOUT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime()),
                 "host": platform.machine(), "qemu": qemu, "debs": debs, "wheels": wheels, "files": files,
                 "bytes": sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()),
                 "smoke_tested": []}
        env = EmulatorEnv(tmp, qemu, stamp)
        if target is not None:
            _smoke(env, target, progress, write=False)
        stamp["setup_seconds"] = round(time.perf_counter() - t0, 1)
        # The completion stamp is written last: a folder without it is a half-finished set-up.
        (tmp / "stamp.json").write_text(json.dumps(stamp, indent=1) + "\n")
        if d.exists():
            shutil.rmtree(d)
        os.rename(tmp, d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress.stage(f"emulator ready at {d} ({stamp['setup_seconds']} s)")
    return EmulatorEnv(d, qemu, stamp)


def _wheel_name(wheels: list[dict[str, str]], w: Wheel) -> str:
    return str(next(x["file"] for x in wheels if x["sha256"] == w.sha256))


def _smoke(env: EmulatorEnv, target: Target, progress: Progress, write: bool = True) -> None:
    """Import numpy + onnxruntime under the target's CPU model: proves the sysroot, wheels and cpuinfo work."""
    progress.stage(f"smoke test: import onnxruntime under qemu -cpu {target.cpu.qemu_model}")
    r = run_python(env, target, ["-c", SMOKE], timeout=300)
    if not r.stdout.startswith("aarch64"):
        raise EmulatorError(f"smoke test under {target.cpu.qemu_model} printed {r.stdout.strip()!r}",
                            "run `edgeq emulator setup --force` to rebuild the environment")
    models = sorted({*get_strs(env.stamp, "smoke_tested", EmulatorError), cpu_model(target)})
    env.stamp["smoke_tested"] = models
    if write:
        tmp = env.path / f".stamp.json.{os.getpid()}"
        tmp.write_text(json.dumps(env.stamp, indent=1) + "\n")
        os.replace(tmp, env.path / "stamp.json")
