"""The aarch64 environment in the user cache: Debian arm64 packages + aarch64 wheels, verified by hash.

Layout under ``cache_dir("emulator")``::

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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.cache import cache_dir
from edgeq.errors import EmulatorError
from edgeq.hashing import sha256_file
from edgeq.progress import Progress

LAYOUT_VERSION = 1
PYTHON = "python3.11"

# The arm64 packages a python3.11 + onnxruntime + ExecuTorch runtime needs (DESIGN.md §4).
DEB_PACKAGES: tuple[str, ...] = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libgcc-s1", "libstdc++6",
    "zlib1g", "libexpat1", "libssl3", "libffi8", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libncursesw6",
    "libtinfo6", "libuuid1", "libgomp1", "libcrypt1",
)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    unpack: tuple[str, ...] | None  # top-level folders to keep; None = the whole wheel into site/
    dest: str  # "site" or "." (the environment root)


# Pinned aarch64 wheels for CPython 3.11 (manylinux_2_28); pip verifies them with --require-hashes.
WHEELS: tuple[Wheel, ...] = (
    Wheel("onnxruntime", "1.31.1", "da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3", None, "site"),
    Wheel("numpy", "2.4.6", "0ab0a9c4ffb1a6d95ef519fe4247dba8eb6b18ad93999f76b7f657039acabd47", None, "site"),
    # Only the torch-free C++ runtime: libraries, headers and the CMake package config.
    Wheel("executorch", "1.5.1", "8ee02348a3ea80ddf770822911ebf78da616b73afce0fbaaa79f23311c88c66a",
          ("executorch/lib/", "executorch/include/", "executorch/share/"), "."),
)
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                   "manylinux2014_aarch64")

# Files checked on every load (cheap); the whole tree is re-hashed by setup() and `status --verify`.
KEY_FILES = ("sysroot/usr/bin/python3.11", "sysroot/lib/ld-linux-aarch64.so.1")
SMOKE = "import numpy, onnxruntime, platform; print(platform.machine(), numpy.__version__, onnxruntime.__version__)"

TIMEOUT_APT = float(os.environ.get("EDGEQ_APT_TIMEOUT", "600"))
TIMEOUT_PIP = float(os.environ.get("EDGEQ_PIP_TIMEOUT", "900"))


def apt_get() -> str:
    """The apt-get binary (overridable so a test can stand in a missing or broken apt)."""
    return os.environ.get("EDGEQ_APT_GET", "apt-get")


def env_key() -> str:
    spec = {"layout": LAYOUT_VERSION, "debs": DEB_PACKAGES, "wheels": [(w.name, w.version, w.sha256, w.unpack)
                                                                        for w in WHEELS]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def root() -> Path:
    return cache_dir("emulator")


def env_dir() -> Path:
    return root() / f"env-{env_key()}"


@dataclass(frozen=True)
class EmulatorEnv:
    """A ready aarch64 environment."""

    path: Path
    qemu: str
    stamp: dict[str, Any]

    @property
    def sysroot(self) -> Path:
        return self.path / "sysroot"

    @property
    def site(self) -> Path:
        return self.path / "site"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / PYTHON

    @property
    def executorch_root(self) -> Path:
        """The aarch64 wheel's ``executorch/`` folder (lib, include, share/cmake) for cross-building runners."""
        return self.path / "executorch"


# --- status / load ---------------------------------------------------------------------------------------

def find_qemu() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


def _read_stamp(d: Path) -> dict[str, Any] | None:
    try:
        s = json.loads((d / "stamp.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return s if isinstance(s, dict) and s.get("key") == env_key() else None


def _quick_ok(d: Path, stamp: dict[str, Any]) -> str | None:
    """None when the key files are present with their recorded hashes, else what is wrong."""
    files = stamp.get("files", {})
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


def verify_tree(d: Path, stamp: dict[str, Any]) -> list[str]:
    """Files added, missing or changed since set-up (empty = intact)."""
    want, have = stamp.get("files", {}), tree_hashes(d)
    bad = [f"missing {k}" for k in want if k not in have]
    bad += [f"changed {k}" for k in want if k in have and have[k] != want[k]]
    bad += [f"unexpected {k}" for k in have if k not in want]
    return bad


def status(verify: bool = False) -> dict[str, Any]:
    """What is there: qemu, the environment, its stamp; ``verify`` re-hashes every file."""
    d = env_dir()
    stamp = _read_stamp(d) if d.is_dir() else None
    partial = sorted(p.name for p in root().glob(f"env-{env_key()}.partial-*"))
    st: dict[str, Any] = {
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
               "files": len(stamp.get("files", {})), "bytes": stamp.get("bytes")})
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

def _run(cmd: list[str], what: str, timeout: float, hint: str = "", **kw: Any) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError as e:
        raise EmulatorError(f"{what}: {cmd[0]} is not available ({e.strerror})", hint) from e
    except subprocess.TimeoutExpired as e:
        raise EmulatorError(f"{what}: timed out after {timeout:.0f} s", hint or "check the network and retry") from e
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise EmulatorError(f"{what} failed (exit {r.returncode}): {' | '.join(tail)}", hint)
    return r


def ensure_qemu(progress: Progress) -> str:
    q = find_qemu()
    if q:
        return q
    cmd = "apt-get update && apt-get install -y qemu-user-static"
    if os.geteuid() != 0:
        raise EmulatorError("qemu-aarch64-static is not installed and installing it needs root",
                            f"run: sudo sh -c '{cmd}'  (then `edgeq emulator setup` again)")
    progress.stage("installing qemu-user-static with apt")
    hint = f"install it by hand: {cmd}"
    _run([apt_get(), "update", "-qq"], "apt-get update", TIMEOUT_APT, hint)
    _run([apt_get(), "install", "-y", "-qq", "qemu-user-static"], "apt-get install qemu-user-static", TIMEOUT_APT,
         hint, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    q = find_qemu()
    if not q:
        raise EmulatorError("qemu-user-static was installed but qemu-aarch64-static is not on PATH", hint)
    return q


def _apt_opts(state: Path) -> list[str]:
    # A private arm64 apt state: no `dpkg --add-architecture`, no change to the host's lists; works without root.
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    return ["-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64", "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "APT::Sandbox::User=" + _user()]


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def fetch_debs(progress: Progress) -> list[dict[str, Any]]:
    """Download the arm64 .debs (cached); each is checked against the SHA256 in Debian's signed index."""
    hint = ("edgeq fetches the arm64 Debian packages with apt-get (Debian/Ubuntu); check that apt works and "
            "deb.debian.org is reachable")
    if shutil.which(apt_get()) is None:
        raise EmulatorError(f"apt-get is not available ({apt_get()!r} not found), so the arm64 sysroot cannot be "
                            "downloaded", hint)
    state = root() / "apt"
    opts = _apt_opts(state)
    progress.stage("refreshing the arm64 package index (private apt state)")
    _run([apt_get(), *opts, "-qq", "update"], "apt-get update (arm64 index)", TIMEOUT_APT, hint)
    r = _run([apt_get(), *opts, "--print-uris", "download", *DEB_PACKAGES], "apt-get --print-uris download",
             TIMEOUT_APT, hint)
    entries = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("SHA256:"):
            entries.append({"url": parts[0].strip("'"), "file": parts[1], "size": int(parts[2]),
                            "sha256": parts[3].split(":", 1)[1]})
    if len(entries) != len(DEB_PACKAGES):
        raise EmulatorError(f"apt listed {len(entries)} of {len(DEB_PACKAGES)} arm64 packages", hint)
    debs = root() / "downloads" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    todo = [e for e in entries if not ((debs / e["file"]).is_file() and sha256_file(debs / e["file"]) == e["sha256"])]
    if todo:
        progress.stage(f"downloading {len(todo)} arm64 Debian package(s)")
        with tempfile.TemporaryDirectory(dir=debs, prefix=".dl-") as tmp:
            names = [e["file"].split("_", 1)[0] for e in todo]
            _run([apt_get(), *opts, "-qq", "download", *names], "apt-get download (arm64)", TIMEOUT_APT, hint, cwd=tmp)
            for e in todo:
                got = Path(tmp, e["file"])
                if not got.is_file() or sha256_file(got) != e["sha256"]:
                    raise EmulatorError(f"{e['file']}: downloaded file does not match Debian's SHA256", hint)
                os.replace(got, debs / e["file"])
    return [{"file": e["file"], "sha256": e["sha256"]} for e in entries]


def wheel_file(w: Wheel) -> Path | None:
    d = root() / "downloads" / "wheels"
    for p in sorted(d.glob(f"{w.name}-{w.version}-*.whl")):
        if sha256_file(p) == w.sha256:
            return p
    return None


def fetch_wheels(progress: Progress) -> list[dict[str, Any]]:
    """Download the pinned aarch64 wheels (cached); pip refuses any file whose hash differs from the pin."""
    d = root() / "downloads" / "wheels"
    d.mkdir(parents=True, exist_ok=True)
    todo = [w for w in WHEELS if wheel_file(w) is None]
    if todo:
        progress.stage(f"downloading aarch64 wheels: {', '.join(f'{w.name}=={w.version}' for w in todo)}")
        with tempfile.TemporaryDirectory(prefix="edgeq-wheels-") as tmp:
            req = Path(tmp, "requirements.txt")
            req.write_text("".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in todo))
            plats = [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                  "--only-binary=:all:", *plats, "--python-version", "3.11", "--implementation", "cp",
                  "--abi", "cp311", "--require-hashes", "-r", str(req), "-d", tmp],
                 "pip download (aarch64 wheels)", TIMEOUT_PIP, "check that PyPI is reachable and pip works")
            for p in Path(tmp).glob("*.whl"):
                os.replace(p, d / p.name)
    out = []
    for w in WHEELS:
        p = wheel_file(w)
        if p is None:
            raise EmulatorError(f"{w.name}=={w.version}: no aarch64 wheel with the pinned sha256 was downloaded",
                                "the pin in edgeq/emulator/sysroot.py and PyPI disagree")
        out.append({"file": p.name, "sha256": w.sha256})
    return out


def _extract_deb(deb: Path, dest: Path) -> None:
    _run(["dpkg-deb", "-x", str(deb), str(dest)], f"dpkg-deb -x {deb.name}", 300,
         "dpkg-deb (Debian's dpkg package) is needed to unpack the arm64 packages")


def _unpack_wheel(path: Path, w: Wheel, dest: Path) -> None:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if w.unpack is None or n.startswith(w.unpack)]
        for n in names:
            if n.startswith("/") or ".." in Path(n).parts:
                raise EmulatorError(f"{path.name}: unsafe path {n!r} in the wheel")
        z.extractall(dest, names)
    for n in names:  # zipfile drops the exec bit
        p = dest / n
        if p.is_file() and (p.suffix == ".so" or ".so." in p.name):
            p.chmod(0o755)


def setup(target: Any = None, progress: Progress | None = None, force: bool = False) -> EmulatorEnv:
    """Prepare the environment (a no-op when it is intact) and smoke-test it on ``target``'s CPU model."""
    progress = progress or Progress(enabled=False)
    t0 = time.perf_counter()
    qemu = ensure_qemu(progress)
    with open(root() / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two set-ups (CI + a test) must not build into the same folders
        return _setup_locked(target, progress, force, qemu, t0)


def _setup_locked(target: Any, progress: Progress, force: bool, qemu: str, t0: float) -> EmulatorEnv:
    d = env_dir()
    stamp = _read_stamp(d) if d.is_dir() else None
    if stamp is not None and not force:
        bad = verify_tree(d, stamp)
        if not bad:
            env = EmulatorEnv(d, qemu, stamp)
            if target is not None and target.cpu.qemu_model not in stamp.get("smoke_tested", []):
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
            _extract_deb(root() / "downloads" / "debs" / e["file"], tmp / "sysroot")
        progress.stage("unpacking aarch64 wheels (onnxruntime, numpy, executorch runtime)")
        (tmp / "site").mkdir()
        for w in WHEELS:
            _unpack_wheel(root() / "downloads" / "wheels" / _wheel_name(wheels, w), w, tmp / w.dest)
        # Byte-compile with the host's CPython 3.11 (same bytecode): emulated imports get ~3x faster, and
        # runs never write into the verified tree (PYTHONDONTWRITEBYTECODE at run time).
        progress.stage("byte-compiling the emulated python's libraries")
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(tmp / "site"),
                        str(tmp / "sysroot" / "usr" / "lib" / PYTHON)], capture_output=True, timeout=900)
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


def _wheel_name(wheels: list[dict[str, Any]], w: Wheel) -> str:
    return next(x["file"] for x in wheels if x["sha256"] == w.sha256)


def _smoke(env: EmulatorEnv, target: Any, progress: Progress, write: bool = True) -> None:
    """Import numpy + onnxruntime under the target's CPU model: proves the sysroot, wheels and cpuinfo work."""
    from edgeq.emulator import qemu as q

    progress.stage(f"smoke test: import onnxruntime under qemu -cpu {target.cpu.qemu_model}")
    r = q.run_python(env, target, ["-c", SMOKE], timeout=300)
    if not r.stdout.startswith("aarch64"):
        raise EmulatorError(f"smoke test under {target.cpu.qemu_model} printed {r.stdout.strip()!r}",
                            "run `edgeq emulator setup --force` to rebuild the environment")
    models = sorted(set(env.stamp.get("smoke_tested", [])) | {target.cpu.qemu_model})
    env.stamp["smoke_tested"] = models
    if write:
        tmp = env.path / f".stamp.json.{os.getpid()}"
        tmp.write_text(json.dumps(env.stamp, indent=1) + "\n")
        os.replace(tmp, env.path / "stamp.json")
