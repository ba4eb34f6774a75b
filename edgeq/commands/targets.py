"""``edgeq targets``: list target profiles, or show one (summary, passes by stage, sources; raw TOML with --toml)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from edgeq.console import emit_json
from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.pipeline.stage import get_stage
from edgeq.targets import list_targets, load_target, targets_dir
from edgeq.targetspec import ExecutorchSpec, OnnxScheme

# ARM feature flags that change which int8/fp16 kernels run; shown in the list so targets are comparable at a glance.
KEY_FEATURES = (("asimddp", "dotprod"), ("i8mm", "i8mm"), ("asimdhp", "fp16"), ("sve2", "sve2"),
                ("avx512_vnni", "vnni"), ("avx_vnni", "vnni"))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("targets", help="list target profiles; `targets show NAME` prints one",
                       description="Target profiles are TOML files shipped in the package (edgeq/profiles/) (or your own file passed as "
                                   "--target path.toml). They pick the quantization scheme, passes and budget.")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="target name or .toml path (for show)")
    p.add_argument("--toml", action="store_true", help="with show: print the target file as written")
    p.set_defaults(func=run)


def key_features(t: Any) -> str:
    feats = set(t.cpu.features)
    seen: list[str] = []
    for flag, label in KEY_FEATURES:
        if flag in feats and label not in seen:
            seen.append(label)
    return ",".join(seen) or "-"


def list_rows() -> list[JSONObject]:
    rows: list[JSONObject] = []
    for name in list_targets():
        t = load_target(name)
        o = t.spec(OnnxScheme)
        rows.append({"name": t.name, "abi": t.abi, "cpu": f"{t.cpu.name} ({t.cpu.isa})", "os": t.os, "isa": t.cpu.isa, "features": key_features(t),
                     "qemu": t.cpu.qemu_model or "-", "ram_mb": t.ram_mb, "storage_mb": t.storage_mb,
                     "scheme": f"{o.activation_type}/{o.weight_type}" + (" rr" if o.reduce_range else ""),
                     "eps": ",".join(o.execution_providers), "gpu": t.gpu_delegate or "-",
                     "description": t.description})
    return rows


def show_text(t: Any) -> str:
    c = t.cpu
    lines = [f"{t.name}: {t.description}", f"  file       {t.path}  (sha256 {t.sha256[:12]})",
             f"  os / abi   {t.os} / {t.abi}",
             f"  cpu        {c.name}, {c.isa}, {c.cores} cores, qemu -cpu {c.qemu_model or '(not emulated)'}",
             f"  features   {' '.join(c.features)}"]
    if c.cpuinfo_part:
        lines.append(f"  cpuinfo    implementer {c.cpuinfo_implementer} part {c.cpuinfo_part} variant "
                     f"{c.cpuinfo_variant} revision {c.cpuinfo_revision}")
    o, et = t.spec(OnnxScheme), t.spec(ExecutorchSpec)
    lines += [f"  budgets    RAM {t.ram_mb} MB, storage {t.storage_mb} MB",
              f"  onnx       QDQ {o.activation_type}/{o.weight_type} "
              f"{'per-channel' if o.per_channel else 'per-tensor'}{' reduce_range' if o.reduce_range else ''}, "
              f"{o.calibration} calibration; EPs {', '.join(o.execution_providers)}",
              f"             why: {o.reason}",
              f"  executorch {et.partitioner}"
              + (f", segment alignment {et.segment_alignment} B" if et.segment_alignment else ""),
              f"  gpu        {t.gpu_delegate or '-'}",
              "  validation " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(t.validation).items()
                                          if v is not None),
              "  passes (in order):"]
    for name in t.passes:
        spec = get_stage(name)
        on = "" if spec.applies_to(t) else "  [declared, but does not apply to this target]"
        lines.append(f"    {spec.phase:<10} {spec.kind:<9} {name:<22} [{','.join(spec.formats)}] {spec.description}{on}")
    if t.sources:
        lines.append("  sources:")
        lines += [f"    - {s}" for s in t.sources]
    return "\n".join(lines)


def _target_file(t: Any) -> Path:
    p = Path(t.path)
    return p if p.is_file() else targets_dir() / p.name


def run(args: argparse.Namespace) -> int:
    if args.action == "show":
        if not args.name:
            raise UsageError("`edgeq targets show` needs a target name", "e.g. edgeq targets show raspberry-pi-5")
        t = load_target(args.name)
        if args.json:
            emit_json(dataclasses.asdict(t))
        elif args.toml:
            print(_target_file(t).read_text(), end="")
        else:
            print(show_text(t))
        return 0
    if args.name:
        raise UsageError(f"`edgeq targets list` takes no name (got {args.name!r})", f"edgeq targets show {args.name}")
    rows = list_rows()
    if args.json:
        emit_json(rows)
        return 0
    # Fits 100 columns: EPs, GPU delegate, storage and the description are in `targets show` and --json.
    cols = ("name", "os", "isa", "qemu", "features", "ram_mb", "scheme")
    head = ("name", "os", "ISA", "qemu -cpu", "int8 kernels", "RAM MB", "act/wt")
    table = [head] + [tuple(str(r[c]) for c in cols) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\n`edgeq targets show NAME` for one target's EPs, GPU delegate, CPU, formats, passes and sources")
    return 0
