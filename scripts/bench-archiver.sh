#!/usr/bin/env bash
# Whole-process peak RSS and time of one archiver copy per recording size (release build).
# The emulator runs as a separate process here, so /usr/bin/time measures pns-local alone.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SIZES:-"1024 8388609 104857600 524288000"}
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The emulator exits when its stdin (this coprocess pipe) closes, i.e. when this script ends.
coproc EMULATOR { exec .venv/bin/python scripts/emulator.py --host 127.0.0.1 --port "$port"; }
read -r ready <&"${EMULATOR[0]}"
export AWS_ENDPOINT_URL=${ready#READY }
export RUST_LOG=warn
printf '%-12s %-14s %-16s %-12s\n' bytes seconds peak_rss_kib "MB/s"
for size in $sizes; do
  out=$( { /usr/bin/time -v target/release/pns-local archive-one "$size"; } 2>&1 )
  seconds=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' <<<"$out")
  mbps=$(awk -v b="$size" -v s="$seconds" 'BEGIN { printf "%.0f", (s > 0 ? b / s / 1e6 : 0) }')
  printf '%-12s %-14s %-16s %-12s\n' "$size" "$seconds" "$rss" "$mbps"
done
