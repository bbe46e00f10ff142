#!/usr/bin/env bash
# Archiver throughput and whole-process peak RSS per recording size (release build), beside
# two floors over the same bytes from the same local recording host: a plain download, and a
# plain download + upload to the emulator. The emulator runs as a separate process, so
# /usr/bin/time measures our process alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=${SIZES:-"10485760 104857600 524288000"}
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The emulator exits when its stdin (this coprocess pipe) closes, i.e. when this script ends.
coproc EMULATOR { exec .venv/bin/python dev/scripts/emulator.py --host 127.0.0.1 --port "$port"; }
read -r ready <&"${EMULATOR[0]}"
export AWS_ENDPOINT_URL=${ready#READY }
export RUST_LOG=warn

# Runs one measurement; prints "seconds rss_kib".
measure() {
  local out seconds rss
  out=$( { /usr/bin/time -v "$@"; } 2>&1 )
  seconds=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' <<<"$out")
  [[ -n "$seconds" && -n "$rss" ]] || { echo "measurement failed: $*" >&2; echo "$out" >&2; exit 1; }
  echo "$seconds $rss"
}
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? b / s / 1e6 : 0) }'; }

printf '%-11s %-34s %8s %8s %12s\n' bytes run seconds "MB/s" peak_rss_kib
verdict=0
for size in $sizes; do
  read -r ds dr < <(measure target/release/pns-bench download "$size")
  read -r cs cr < <(measure target/release/pns-bench copy "$size")
  read -r as ar < <(measure target/release/pns-local archive-one "$size")
  printf '%-11s %-34s %8s %8s %12s\n' "$size" "floor: download only" "$ds" "$(mbps "$size" "$ds")" "$dr"
  printf '%-11s %-34s %8s %8s %12s\n' "$size" "floor: download + plain upload" "$cs" "$(mbps "$size" "$cs")" "$cr"
  printf '%-11s %-34s %8s %8s %12s\n' "$size" "archiver (pns-local archive-one)" "$as" "$(mbps "$size" "$as")" "$ar"
  awk -v d="$ds" -v c="$cs" -v a="$as" -v r="$ar" 'BEGIN {
    printf "%-11s ratio to download %.2f, to download+upload %.2f (goal >= 0.70); RSS %.1f MiB (goal <= 64)\n",
      "", d / a, c / a, r / 1024 }'
  if (( ar > 65536 )); then verdict=1; fi
done
exit $verdict
