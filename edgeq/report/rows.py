"""One table model shared by every renderer: a row per (artifact, runner) with ratios to the float baseline."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.jsontypes import (
    JSONObject,
    get_int,
    get_number_or_none,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
    get_strs,
)


@dataclass(frozen=True)
class Row:
    artifact: str
    format: str
    precision: str
    bytes: int
    size_ratio: float | None
    runner: str
    accuracy: float | None
    accuracy_drop_pts: float | None
    top1: float | None
    cosine_mean: float | None
    cosine_min: float | None
    sqnr_db: float | str | None
    max_abs_diff: float | None
    latency_ms: float | None
    latency_kind: str
    latency_ratio: float | None
    passed: bool | None
    failures: tuple[str, ...]
    latency_how: str = "single measurement run"  # or how the paired host timing ran


def _baseline(artifacts: list[JSONObject], fmt: str) -> JSONObject | None:
    for a in artifacts:
        if a["format"] == fmt and a["role"] == "baseline":
            return a
    return None


def _metric(metrics: JSONObject, key: str) -> float | str | None:
    value = metrics.get(key)
    return value if isinstance(value, str) else get_number_or_none(metrics, key)


def rows(manifest: JSONObject) -> list[Row]:
    arts = get_objects(manifest, "artifacts")
    out: list[Row] = []
    for a in arts:
        base = _baseline(arts, get_str(a, "format"))
        name, fmt, precision, size = get_str(a, "name"), get_str(a, "format"), get_str(a, "precision"), get_int(a, "bytes")
        base_bytes = get_int(base, "bytes") if base else 0
        size_ratio = size / base_bytes if base and base_bytes else None
        vals = get_objects(a, "validations")
        if not vals:
            out.append(Row(name, fmt, precision, size, size_ratio, "-", None, None, None,
                           None, None, None, None, None, "", None, None, ()))
        for v in vals:
            out.append(_row(a, v, base, size_ratio))
    return out


def _row(a: JSONObject, v: JSONObject, base: JSONObject | None, size_ratio: float | None) -> Row:
    m = get_object(v, "metrics")
    latency_ms = get_number_or_none(v, "latency_ms")
    lat_ratio = None
    paired = get_object_or_none(v, "latency_detail") or {}
    ratio_to_float = get_number_or_none(paired, "ratio_to_float")
    if ratio_to_float is not None:  # timed interleaved with the float model: its own ratio
        lat_ratio = float(ratio_to_float)
    elif base and latency_ms:
        bl = [bv for bv in get_objects(base, "validations")
              if bv["runner"] == v["runner"] and bv["cpu_model"] == v["cpu_model"]]
        base_ms = get_number_or_none(bl[0], "latency_ms") if bl else None
        if base_ms:
            lat_ratio = latency_ms / base_ms
    runner = get_str(v, "runner") + (f" ({v['cpu_model']}, emulated)" if v["emulated"] else "")
    if v.get("board"):  # a fleet board: its name first, so each board is its own recognisable row
        runner = f"{v['board']} ({v['runner']})"
    check = get_object(v, "budget_check")
    passed = check["passed"]
    return Row(get_str(a, "name"), get_str(a, "format"), get_str(a, "precision"), get_int(a, "bytes"), size_ratio,
               runner, get_number_or_none(m, "accuracy"), get_number_or_none(m, "accuracy_drop_pts"), get_number_or_none(m, "top1_agreement"),
               get_number_or_none(m, "cosine_mean"), get_number_or_none(m, "cosine_min"), _metric(m, "sqnr_db"), get_number_or_none(m, "max_abs_diff"),
               latency_ms, get_str(v, "latency_kind"), lat_ratio, passed if isinstance(passed, bool) else None,
               tuple(get_strs(check, "failures")), _latency_how(paired))


def _latency_how(paired: JSONObject) -> str:
    if not paired:
        return "single measurement run"
    return (f"median of {paired.get('rounds')} rounds interleaved with the float model, "
            f"{paired.get('threads')} thread, batch 1")


def fmt_num(x: float | str | None, spec: str = ".4f") -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    return format(x, spec)


def fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def fmt_latency(r: Row) -> str:
    if r.latency_ms is None:
        return "–"
    s = f"{r.latency_ms:.3f} ms"
    if r.latency_kind == "emulated":
        s += " (emulated, not device speed)"
    if r.latency_ratio is not None:
        s += f" ({r.latency_ratio:.2f}×)"
    return s
