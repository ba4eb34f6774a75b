#!/usr/bin/env bash
# Run the slow quality tests twice -- once as they are, once while a CPU hog keeps every core busy -- and fail if
# any test's verdict (passed / failed / skipped) differs between the two runs. A CI farm is a loaded machine: a
# verdict that depends on load (a time budget, an unpinned thread count) shows up here.
#
#   scripts/under-load.sh                       # the default quality tests (-m slow)
#   scripts/under-load.sh tests/compress/test_qat_ranges.py -k qat4     # any pytest selection
#
# Env: PYTHON (default .venv/bin/python), HOGS (busy processes, default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
HOGS=${HOGS:-$(nproc)}
if [ "$#" -eq 0 ]; then
  set -- -m slow tests/compress/test_qat_ranges.py tests/compress/test_compress_methods.py tests/test_search.py \
         tests/test_pte_search.py tests/outliers
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/edgeq-under-load-XXXXXX")
hogs=()
stop_hogs() { for p in "${hogs[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; hogs=(); }
trap 'stop_hogs; rm -rf "$work"' EXIT

run() {  # run NAME: pytest with a JUnit file; its exit code is not the verdict (the comparison is)
  echo "under-load: run '$1' ($(cut -d' ' -f1-3 /proc/loadavg) load)" >&2
  "$PY" -m pytest -q -p no:cacheprovider --junitxml "$work/$1.xml" "${@:2}" >"$work/$1.log" 2>&1 || true
  tail -1 "$work/$1.log" >&2
}

run idle "$@"
for _ in $(seq "$HOGS"); do "$PY" -c "while True: pass" & hogs+=($!); done
run loaded "$@"
stop_hogs

"$PY" - "$work/idle.xml" "$work/loaded.xml" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET


def verdicts(path: str) -> dict[str, str]:
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        out[f"{case.get('classname')}::{case.get('name')}"] = kind
    return out


idle, loaded = verdicts(sys.argv[1]), verdicts(sys.argv[2])
diff = sorted(t for t in idle.keys() | loaded.keys() if idle.get(t) != loaded.get(t))
for t in diff:
    print(f"under-load: DIFFERS {t}: idle {idle.get(t, 'absent')}, loaded {loaded.get(t, 'absent')}")
print(f"under-load: {len(idle)} test(s), {len(diff)} verdict(s) differ under load")
sys.exit(1 if diff or not idle else 0)
PYEOF
