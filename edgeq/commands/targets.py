"""``edgeq targets``: list target profiles, or show one."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list target profiles; `targets show NAME` prints one",
                       description="Target profiles are TOML files in targets/ (or your own file passed as "
                                   "--target path.toml). They pick the quantization scheme, passes and budget.")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="target name or .toml path (for show)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeq.errors import UsageError
    from edgeq.targets import list_targets, load_target, targets_dir

    if args.action == "show":
        if not args.name:
            raise UsageError("`edgeq targets show` needs a target name", "e.g. edgeq targets show raspberry-pi-5")
        t = load_target(args.name)
        if args.json:
            import dataclasses

            print(json.dumps(dataclasses.asdict(t), indent=2, default=str))
        else:
            print(f"# {t.path}\n")
            print(open(t.path if t.path.startswith("/") else targets_dir() / (t.name + ".toml")).read()
                  if not args.name.endswith(".toml") else open(args.name).read())
        return 0
    rows = []
    for name in list_targets():
        t = load_target(name)
        rows.append((t.name, t.abi, f"{t.cpu.name} ({t.cpu.isa})", t.cpu.qemu_model or "-",
                     f"{t.onnx.activation_type}/{t.onnx.weight_type}" + (" rr" if t.onnx.reduce_range else ""),
                     ",".join(t.formats), t.description))
    if args.json:
        print(json.dumps([dict(zip(("name", "abi", "cpu", "qemu", "scheme", "formats", "description"), r, strict=True))
                          for r in rows], indent=2))
        return 0
    head = ("name", "abi", "cpu", "qemu -cpu", "onnx act/wt", "formats", "description")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head[:-1])]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False)) + "  " + head[-1])
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0
