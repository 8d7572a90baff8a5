#!/usr/bin/env bash
# The console's CPU in a real terminal (tmux, 200x60) vs headless, same load, same
# process layout as the demo (simulator + embedded brokers + bridges + sandbox in one
# process). Prints % of one core and messages taken in; never fails on figures.
#   bash bench/ui_tmux.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
work=$(mktemp -d)
trap 'tmux kill-session -t dtp-bench 2>/dev/null || true; rm -rf "$work"' EXIT
.venv/bin/python - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
c = yaml.safe_load(open("config/console.yaml"))
c["simulator"]["generators"] = {"enabled": False}
c["registry"] = {"enabled": False}
c["stores"] = {"sqlite_path": f"{work}/p.sqlite3", "blob_dir": f"{work}/blobs"}
for p in c["plants"]:
    p["simulator"].update({"robots": 100, "unmapped": 0, "rate_hz": 25.0, "fault_rate": 0.0})
    ati = p["format"] == "ati_sherpa"
    p["device_map"] = {
        (f"ati_amr_{i:03d}" if ati else f"hitech-amr-{i:03d}"): f"{p['name'][:3].lower()}-{i:03d}"
        for i in range(1, 101)
    }
yaml.safe_dump(c, open(f"{work}/load.yaml", "w"))
PY
cpu() {  # pid seconds -> % of one core
  local hz t0 t1; hz=$(getconf CLK_TCK)
  t0=$(awk '{print $14+$15}' "/proc/$1/stat"); sleep "$2"; t1=$(awk '{print $14+$15}' "/proc/$1/stat")
  echo $(( (t1 - t0) * 100 / (hz * $2) ))
}
total=$((secs + 20))
tmux new-session -d -s dtp-bench -x 200 -y 60 -e COLORTERM=truecolor \
  ".venv/bin/dtp-console -c $work/load.yaml run --for ${total}s --stats-json $work/ui.json"
sleep 10
pid=$(pgrep -f "$work/load.yaml run --for" | while read -r p; do grep -q python "/proc/$p/cmdline" && echo "$p"; done | head -1)
ui=$(cpu "$pid" "$secs"); sleep $((total - secs - 8))
.venv/bin/dtp-console -c "$work/load.yaml" run --no-ui --for ${total}s --stats-json "$work/nui.json" >/dev/null 2>&1 &
sleep 10
pid=$(pgrep -f "$work/load.yaml run --no-ui" | while read -r p; do grep -q python "/proc/$p/cmdline" && echo "$p"; done | head -1)
nui=$(cpu "$pid" "$secs"); wait
.venv/bin/python - "$work" "$ui" "$nui" "$total" <<'PY'
import json, sys
work, ui, nui, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rx = {k: sum(p["received"] for p in json.load(open(f"{work}/{k}.json"))["plants"].values()) for k in ("ui", "nui")}
print(f"UI in tmux 200x60: {ui}% of a core, {rx['ui'] / total:,.0f} msg/s taken in")
print(f"headless:          {nui}% of a core, {rx['nui'] / total:,.0f} msg/s taken in")
PY
