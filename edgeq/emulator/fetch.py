"""Fetch what the aarch64 sysroot is built from: arm64 Debian packages (apt, private state) and pinned wheels."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgeq.emulator.env import find_qemu, root
from edgeq.errors import EmulatorError
from edgeq.hashing import sha256_file
from edgeq.progress import Progress

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

TIMEOUT_APT = float(os.environ.get("EDGEQ_APT_TIMEOUT", "600"))
TIMEOUT_PIP = float(os.environ.get("EDGEQ_PIP_TIMEOUT", "900"))


def apt_get() -> str:
    """The apt-get binary (overridable so a test can stand in a missing or broken apt)."""
    return os.environ.get("EDGEQ_APT_GET", "apt-get")


def run_tool(cmd: list[str], what: str, timeout: float, hint: str = "",
             cwd: str | Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
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
    run_tool([apt_get(), "update", "-qq"], "apt-get update", TIMEOUT_APT, hint)
    run_tool([apt_get(), "install", "-y", "-qq", "qemu-user-static"], "apt-get install qemu-user-static", TIMEOUT_APT,
         hint, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    q = find_qemu()
    if not q:
        raise EmulatorError("qemu-user-static was installed but qemu-aarch64-static is not on PATH", hint)
    return q


def apt_opts(state: Path) -> list[str]:
    # A private arm64 apt state: no `dpkg --add-architecture`, no change to the host's lists; works without root.
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    return ["-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64", "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "APT::Sandbox::User=" + _user()]


def _user() -> str:
    import pwd  # POSIX-only module: imported where it is used so the package still imports on Windows

    return pwd.getpwuid(os.geteuid()).pw_name


@dataclass(frozen=True)
class _Deb:
    """One arm64 package as ``apt-get --print-uris`` lists it."""

    url: str
    file: str
    size: int
    sha256: str


def fetch_debs(progress: Progress) -> list[dict[str, str]]:
    """Download the arm64 .debs (cached); each is checked against the SHA256 in Debian's signed index."""
    hint = ("edgeq fetches the arm64 Debian packages with apt-get (Debian/Ubuntu); check that apt works and "
            "deb.debian.org is reachable")
    if shutil.which(apt_get()) is None:
        raise EmulatorError(f"apt-get is not available ({apt_get()!r} not found), so the arm64 sysroot cannot be "
                            "downloaded", hint)
    state = root() / "apt"
    opts = apt_opts(state)
    progress.stage("refreshing the arm64 package index (private apt state)")
    run_tool([apt_get(), *opts, "-qq", "update"], "apt-get update (arm64 index)", TIMEOUT_APT, hint)
    r = run_tool([apt_get(), *opts, "--print-uris", "download", *DEB_PACKAGES], "apt-get --print-uris download",
             TIMEOUT_APT, hint)
    entries: list[_Deb] = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("SHA256:"):
            entries.append(_Deb(parts[0].strip("'"), parts[1], int(parts[2]), parts[3].split(":", 1)[1]))
    if len(entries) != len(DEB_PACKAGES):
        raise EmulatorError(f"apt listed {len(entries)} of {len(DEB_PACKAGES)} arm64 packages", hint)
    debs = root() / "downloads" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    todo = [e for e in entries if not ((debs / e.file).is_file() and sha256_file(debs / e.file) == e.sha256)]
    if todo:
        progress.stage(f"downloading {len(todo)} arm64 Debian package(s)")
        with tempfile.TemporaryDirectory(dir=debs, prefix=".dl-") as tmp:
            names = [e.file.split("_", 1)[0] for e in todo]
            run_tool([apt_get(), *opts, "-qq", "download", *names], "apt-get download (arm64)", TIMEOUT_APT, hint, cwd=tmp)
            for e in todo:
                got = Path(tmp, e.file)
                if not got.is_file() or sha256_file(got) != e.sha256:
                    raise EmulatorError(f"{e.file}: downloaded file does not match Debian's SHA256", hint)
                os.replace(got, debs / e.file)
    return [{"file": e.file, "sha256": e.sha256} for e in entries]


def wheel_file(w: Wheel) -> Path | None:
    d = root() / "downloads" / "wheels"
    for p in sorted(d.glob(f"{w.name}-{w.version}-*.whl")):
        if sha256_file(p) == w.sha256:
            return p
    return None


def fetch_wheels(progress: Progress) -> list[dict[str, str]]:
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
            run_tool([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                  "--only-binary=:all:", *plats, "--python-version", "3.11", "--implementation", "cp",
                  "--abi", "cp311", "--require-hashes", "-r", str(req), "-d", tmp],
                 "pip download (aarch64 wheels)", TIMEOUT_PIP, "check that PyPI is reachable and pip works")
            for p in Path(tmp).glob("*.whl"):
                os.replace(p, d / p.name)
    out = []
    for w in WHEELS:
        found = wheel_file(w)
        if found is None:
            raise EmulatorError(f"{w.name}=={w.version}: no aarch64 wheel with the pinned sha256 was downloaded",
                                "the pin in edgeq/emulator/sysroot.py and PyPI disagree")
        out.append({"file": found.name, "sha256": w.sha256})
    return out


def extract_deb(deb: Path, dest: Path) -> None:
    run_tool(["dpkg-deb", "-x", str(deb), str(dest)], f"dpkg-deb -x {deb.name}", 300,
         "dpkg-deb (Debian's dpkg package) is needed to unpack the arm64 packages")


def unpack_wheel(path: Path, w: Wheel, dest: Path) -> None:
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
