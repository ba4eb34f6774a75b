"""``edgeq emulator setup|status``: prepare and inspect the aarch64 emulator in the user cache."""

from __future__ import annotations

import argparse
import json

from edgeq.commands.common import progress_from
from edgeq.emulator import setup, status
from edgeq.emulator.qemu import cpu_model
from edgeq.errors import EmulatorError
from edgeq.jsontypes import as_list, get_objects, get_str, get_strs, number_or_none
from edgeq.targets import load_target

DEFAULT_SMOKE_TARGET = "raspberry-pi-4"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("emulator", help="set up / inspect the ARM emulator (qemu-user + aarch64 sysroot)",
                       description="Validation on the ARM kernels a device runs, without the device: qemu-user "
                                   "with the target's CPU model, an aarch64 python3.11 sysroot from Debian arm64 "
                                   "packages, aarch64 wheels of onnxruntime and numpy, and the aarch64 ExecuTorch "
                                   "runtime. Everything lives in the user cache and is verified by hash.")
    esub = p.add_subparsers(dest="emulator_command", metavar="ACTION", required=True)
    s = esub.add_parser("setup", help="download and unpack everything (a no-op when already done)")
    s.add_argument("--target", default=DEFAULT_SMOKE_TARGET, metavar="NAME|FILE.toml",
                   help=f"ARM target whose CPU model is smoke-tested (default {DEFAULT_SMOKE_TARGET})")
    s.add_argument("--force", action="store_true", help="rebuild the environment even if it is intact")
    s.set_defaults(func=run_setup)
    st = esub.add_parser("status", help="say what is set up (exit 0 ready, 3 not ready)")
    st.add_argument("--verify", action="store_true", help="re-hash every file of the environment")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=run_status)


def run_setup(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    cpu_model(target)  # a typed error for a non-ARM target before any download
    env = setup(target, progress_from(args), force=args.force)
    print(f"emulator ready: {env.path}")
    print(f"  smoke-tested CPU models: {', '.join(get_strs(env.stamp, 'smoke_tested', EmulatorError))}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    st = status(verify=args.verify)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0 if st["ready"] else 3
    print(f"qemu:      {st['qemu'] or 'not installed (apt-get install qemu-user-static)'}")
    print(f"cache:     {st['cache']}")
    print(f"env:       {st['env']}")
    if st["ready"]:
        print(f"state:     ready (set up {st.get('created')}, {st.get('files')} files, "
              f"{(number_or_none(st.get('bytes')) or 0) / 1e6:.0f} MB{', every hash verified' if args.verify else ''})")
        print(f"debs:      {len(as_list(st.get('debs') or [], 'debs', EmulatorError))} arm64 packages")
        wheels = get_objects(st, "wheels", EmulatorError)
        print(f"wheels:    {', '.join(get_str(w, 'file', EmulatorError).split('-cp')[0] for w in wheels)}")
        print(f"tested on: {', '.join(get_strs(st, 'smoke_tested', EmulatorError)) or '-'}")
        return 0
    print(f"state:     NOT READY: {st['problem']}")
    print("hint:      run `edgeq emulator setup`")
    return 3
