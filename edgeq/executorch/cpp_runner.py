"""Build the torch-free C++ ``.pte`` runner (``sample_apps/raspberry_pi_cpp``) against an executorch wheel.

``build_runner("x86_64")`` builds natively against the installed wheel; ``build_runner("aarch64",
executorch_root=<unzipped aarch64 wheel>/executorch)`` cross-builds with Debian's ``g++-aarch64-linux-gnu``.
Binaries are cached under ``cache_dir("runners")`` keyed by the source hash, the arch, the executorch version
and the wheel folder, so a changed source or wheel rebuilds and everything else is instant.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgeq.cache import cache_dir
from edgeq.errors import RunnerError, UsageError
from edgeq.resources import sample_app_dir

SOURCES = ("CMakeLists.txt", "edgeq_runner.cpp", "edgeq_json.h", "edgeq_image.h", "edgeq_npz.h", "edgeq_sha256.h",
           "toolchain-aarch64.cmake")
# ExecuTorch's llama:: custom-op kernels, vendored (llama_ops/README.md); every file under it is hashed.
VENDORED = "llama_ops"
# The llama:: operators those kernels register (op_sdpa.cpp, op_update_cache.cpp): a .pte calling only these loads.
LLAMA_OPS = ("llama::custom_sdpa", "llama::update_cache", "llama::custom_quantized_sdpa", "llama::sdpa_with_kv_cache",
             "llama::update_cache_with_indices", "llama::gated_delta_rule", "llama::channelwise_gated_delta_rule")
BINARY = "edgeq_runner"
ARCHES = ("x86_64", "aarch64")
BUILD_TIMEOUT_S = 900


def source_dir() -> Path:
    """The runner sources, shipped as package data (``edgeq/sample_apps/raspberry_pi_cpp``)."""
    return sample_app_dir("raspberry_pi_cpp")


def _package_dir(name: str, why: str, fix: str) -> Path:
    """An installed package's folder, found without importing it (importing torch or executorch is slow)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RunnerError(f"{name} is not installed, {why}", fix)
    return Path(next(iter(spec.submodule_search_locations)))


def torch_include_dir() -> Path:
    """torch's ``include/``: the vendored llama kernels use its header-only ``ATen/cpu/vec`` (any arch)."""
    return _package_dir("torch", "so the ATen/cpu/vec headers the llama:: kernels compile against are missing",
                        "pip install torch (edgeq's own dependency)") / "include"


def installed_executorch_root() -> Path:
    """The installed wheel's ``executorch/`` folder, found without importing it (importing pulls in torch)."""
    return _package_dir("executorch", "so there is no C++ runtime to build the runner against",
                        "pip install executorch (the wheel ships libexecutorch.so and its CMake config)")


def executorch_version(root: Path) -> str:
    text = (root / "version.py").read_text() if (root / "version.py").is_file() else ""
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return m.group(1) if m else "unknown"


def source_hash() -> str:
    h = hashlib.sha256()
    vendored = sorted(p for p in (source_dir() / VENDORED).rglob("*") if p.is_file())
    for path in [source_dir() / name for name in SOURCES] + vendored:
        h.update(str(path.relative_to(source_dir())).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build_runner(arch: str = "x86_64", executorch_root: Path | None = None) -> Path:
    """Return the path of a built ``edgeq_runner`` for ``arch`` (building it once per source/wheel)."""
    if arch not in ARCHES:
        raise UsageError(f"unknown runner architecture {arch!r}", f"choose one of {', '.join(ARCHES)}")
    if executorch_root is None:
        if arch == "aarch64":
            raise UsageError("an aarch64 runner needs the aarch64 executorch wheel's executorch/ folder",
                             "pass executorch_root=<unzipped aarch64 wheel>/executorch (the emulator sets it up)")
        executorch_root = installed_executorch_root()
    root = Path(executorch_root).resolve()
    cmake_dir = root / "share" / "cmake"
    if not (cmake_dir / "executorch-config.cmake").is_file():
        raise RunnerError(f"{root} has no share/cmake/executorch-config.cmake",
                          "point executorch_root at an executorch wheel's executorch/ folder")
    key = hashlib.sha256(f"{source_hash()}|{arch}|{executorch_version(root)}|{root}".encode()).hexdigest()[:16]
    dest = cache_dir("runners", f"{BINARY}-{arch}-{key}")
    binary = dest / BINARY
    if binary.is_file():
        return binary
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test workers must not build into the same folder
        if binary.is_file():
            return binary
        _build(arch, cmake_dir, binary)
    return binary


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RunnerError(f"{name} is not installed; it is needed to build the C++ .pte runner", hint)
    return path


def _build(arch: str, cmake_dir: Path, binary: Path) -> None:
    deps = "run `make system-deps` (Debian: apt-get install cmake g++ g++-aarch64-linux-gnu)"
    cmake = _tool("cmake", deps)
    _tool("aarch64-linux-gnu-g++" if arch == "aarch64" else "c++", deps)
    with tempfile.TemporaryDirectory(prefix="edgeq-runner-build-") as tmp:
        build = Path(tmp) / "build"
        configure = [cmake, "-S", str(source_dir()), "-B", str(build), f"-Dexecutorch_DIR={cmake_dir}",
                     f"-DEDGEQ_TORCH_INCLUDE_DIR={torch_include_dir()}", "-DCMAKE_BUILD_TYPE=Release"]
        if arch == "aarch64":
            configure.append(f"-DCMAKE_TOOLCHAIN_FILE={source_dir() / 'toolchain-aarch64.cmake'}")
        for cmd in (configure, [cmake, "--build", str(build), "-j", str(min(2, os.cpu_count() or 1))]):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired as e:
                raise RunnerError(f"building the C++ runner timed out after {BUILD_TIMEOUT_S} s") from e
            if r.returncode != 0:
                tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
                raise RunnerError(f"building the C++ runner ({arch}) failed at `{' '.join(cmd[:2])} ...`:\n{tail}",
                                  "check that executorch_root is a complete executorch wheel folder for this arch")
        built = build / BINARY
        if not built.is_file():
            raise RunnerError(f"the C++ runner build produced no {BINARY}")
        tmp_bin = binary.with_suffix(".tmp")
        shutil.copy2(built, tmp_bin)
        os.replace(tmp_bin, binary)  # atomic: a reader never sees a half-copied binary
