"""The ``edgeq`` command: a thin layer over the Python API. Each subcommand lives in ``edgeq/commands/``.

Exit codes: 0 pass · 1 budget exceeded · 2 usage or input error · 3 runner/tool failure · 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgeq.errors import EdgeqError

COMMANDS = ("export", "check", "validate", "demo", "targets", "inspect", "emulator", "sweep")

EPILOG = """\
examples:
  edgeq demo                                   train the digits CNN, export INT8 ONNX, validate, report
  edgeq export mypkg.models:build --calib calib.npz -o out/        static INT8 ONNX, host-validated
  edgeq export model.pt2 --calib calib/ --target raspberry-pi-5 --format onnx,pte -o out/
  edgeq check out/ --max-accuracy-drop 0.5 --junit edgeq.xml       the CI gate (exit 1 when over budget)
  edgeq targets                                list target profiles; `edgeq targets show NAME` for one

exit codes: 0 pass, 1 budget exceeded, 2 usage/input error, 3 runner failure, 130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeq",
        description="PyTorch model -> INT8 ONNX / ExecuTorch artifacts for phones and boards, validated on the "
                    "ARM kernels they will run on.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from edgeq.manifest import edgeq_version

    p.add_argument("--version", action="version", version=f"edgeq {edgeq_version()}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (errors and the verdict only)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"edgeq.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"edgeq.commands.{name}":
                continue  # a feature not installed in this build
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeqError as e:
        print(f"edgeq: error: {e.cause}", file=sys.stderr)
        if e.hint:
            print(f"edgeq: hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("edgeq: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
