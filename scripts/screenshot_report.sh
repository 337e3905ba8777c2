#!/usr/bin/env bash
# Render a report page to PNG with headless Chromium (Debian: apt-get install -y chromium).
# Usage: scripts/screenshot_report.sh REPORT_DIR/index.html OUT.png [WIDTH] [HEIGHT]
# Offline: background networking, component updates, sync and QUIC are switched off, and a
# throw-away profile is used so nothing of the user's browser is read or written.
set -euo pipefail
page="$(realpath "$1")"
out="$(realpath -m "$2")"
width="${3:-1400}"
height="${4:-4000}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$browser" ] || { echo "screenshot_report.sh: no chromium on PATH (apt-get install -y chromium)" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --screenshot="$out" \
  --window-size="$width,$height" "file://$page" >/dev/null 2>&1
[ -s "$out" ] || { echo "screenshot_report.sh: chromium wrote no $out" >&2; exit 1; }
echo "$out"
