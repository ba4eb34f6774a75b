"""Typed errors. Each carries a one-line cause and a hint; the CLI maps them to exit codes.

Exit codes: 0 pass, 1 budget exceeded (a verdict, not an error), 2 usage or input error,
3 runtime/tool failure (runner crash, emulator fault), 130 interrupted.
"""

from __future__ import annotations

import errno


class EdgeqError(Exception):
    """Base class: ``cause`` says what is wrong, ``hint`` how to fix it."""

    exit_code: int = 2

    def __init__(self, cause: str, hint: str = "") -> None:
        self.cause = cause
        self.hint = hint
        super().__init__(cause if not hint else f"{cause}\n  hint: {hint}")


class UsageError(EdgeqError):
    """Options that cannot work together or are out of range."""


class ModelSourceError(EdgeqError):
    """The model reference cannot be resolved: missing file, import failure, wrong type."""


class DataError(EdgeqError):
    """Calibration / evaluation data is missing, empty, non-finite or malformed."""


class SignatureMismatchError(DataError):
    """Data names, shapes or dtypes do not match the model's inputs."""


class CaptureError(EdgeqError):
    """torch.export / torch.onnx.export could not capture the model."""


class QuantizationError(EdgeqError):
    """The quantizer failed or produced an unusable model."""


class ArtifactError(EdgeqError):
    """An artifact (.onnx, .pte, ...) is corrupt, truncated or unreadable."""


class TargetError(EdgeqError):
    """Unknown target name or an invalid target file."""


class OutputExistsError(EdgeqError):
    """The output directory already exists and --force was not given."""


class ManifestError(EdgeqError):
    """edgeq.json is missing, invalid, or its artifacts do not match their hashes."""


class PassError(EdgeqError):
    """A graph pass is misconfigured or failed."""


class PipelineError(PassError):
    """A target's stage list is out of order or a stage's input is produced after it."""


class RunnerError(EdgeqError):
    """A runner (host, emulator, ssh, adb) failed to execute an artifact."""

    exit_code = 3


class StorageError(EdgeqError):
    """Writing failed for lack of room: disk full, file size limit, quota (the run left nothing behind)."""

    exit_code = 3


# errno values that mean "no room to write": ENOSPC, EFBIG (RLIMIT_FSIZE, file system limits), EDQUOT
STORAGE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def storage_error(e: BaseException) -> StorageError | None:
    """The :class:`StorageError` behind ``e`` when ``e`` or an exception it was raised from is a full disk."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in STORAGE_ERRNOS:
            where = f" writing {cur.filename}" if cur.filename else ""
            return StorageError(f"no room to write{where}: {cur.strerror or cur}",
                                "free space (or raise the quota / file size limit) on the disk holding OUTDIR, the "
                                "temp folder ($TMPDIR) and the user cache, then re-run; this run left nothing behind")
        cur = cur.__cause__ or cur.__context__
    return None


class EmulatorError(RunnerError):
    """The ARM emulator is not set up or failed."""


class DeviceError(RunnerError):
    """A remote device is unreachable, refused authentication or lacks a runtime."""


class DeviceUnreachableError(DeviceError):
    """A remote device did not answer: connection refused or timed out, or the connection dropped mid-run."""


class FleetError(UsageError):
    """A fleet file (edgeq-fleet.toml) or a fleet selector is invalid: unknown profile, duplicate board, bad ssh spec."""


def error_class(name: str) -> type[EdgeqError] | None:
    """The EdgeqError subclass called ``name`` (a forked child reports its typed error by class name)."""
    queue: list[type[EdgeqError]] = [EdgeqError]
    while queue:
        cls = queue.pop()
        if cls.__name__ == name:
            return cls
        queue += cls.__subclasses__()
    return None
