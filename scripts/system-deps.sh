#!/usr/bin/env bash
# Installs the Debian packages edgeq's emulator, C++ runner and SSH test use. Idempotent; needs root.
set -euo pipefail
# chromium: the report test renders report.html headless (screenshot, console errors, overflow at 1280 px).
pkgs=(qemu-user-static g++ g++-aarch64-linux-gnu cmake openssh-server openssh-client chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "edgeq: missing Debian packages: ${missing[*]}" >&2
  echo "edgeq: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  echo "edgeq: (tests that need them will be skipped)" >&2
  exit 0
fi
echo "edgeq: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
