"""One table model shared by every renderer: a row per (artifact, runner) with ratios to the float baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def _baseline(artifacts: list[dict[str, Any]], fmt: str) -> dict[str, Any] | None:
    for a in artifacts:
        if a["format"] == fmt and a["role"] == "baseline":
            return a
    return None


def rows(manifest: dict[str, Any]) -> list[Row]:
    arts = manifest["artifacts"]
    out: list[Row] = []
    for a in arts:
        base = _baseline(arts, a["format"])
        size_ratio = a["bytes"] / base["bytes"] if base and base["bytes"] else None
        vals = a["validations"] or [None]
        for v in vals:
            if v is None:
                out.append(Row(a["name"], a["format"], a["precision"], a["bytes"], size_ratio, "-", None, None, None,
                               None, None, None, None, None, "", None, None, ()))
                continue
            m = v["metrics"]
            lat_ratio = None
            paired = v.get("latency_detail") or {}
            if paired.get("ratio_to_float") is not None:  # timed interleaved with the float model: its own ratio
                lat_ratio = float(paired["ratio_to_float"])
            elif base and v["latency_ms"]:
                bl = [bv for bv in base["validations"] if bv["runner"] == v["runner"] and bv["cpu_model"] == v["cpu_model"]]
                if bl and bl[0]["latency_ms"]:
                    lat_ratio = v["latency_ms"] / bl[0]["latency_ms"]
            runner = v["runner"] + (f" ({v['cpu_model']}, emulated)" if v["emulated"] else "")
            if v.get("board"):  # a fleet board: its name first, so each board is its own recognisable row
                runner = f"{v['board']} ({v['runner']})"
            out.append(Row(a["name"], a["format"], a["precision"], a["bytes"], size_ratio, runner,
                           m.get("accuracy"), m.get("accuracy_drop_pts"), m.get("top1_agreement"),
                           m.get("cosine_mean"), m.get("cosine_min"), m.get("sqnr_db"), m.get("max_abs_diff"),
                           v["latency_ms"], v["latency_kind"], lat_ratio, v["budget_check"]["passed"],
                           tuple(v["budget_check"]["failures"]), _latency_how(paired)))
    return out


def _latency_how(paired: dict[str, Any]) -> str:
    if not paired:
        return "single measurement run"
    return (f"median of {paired.get('rounds')} rounds interleaved with the float model, "
            f"{paired.get('threads')} thread, batch 1")


def fmt_num(x: Any, spec: str = ".4f") -> str:
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
