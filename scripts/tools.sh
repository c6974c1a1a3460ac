#!/usr/bin/env bash
# Prints the directory holding Debian's `prometheus` and `promtool`, fetching them first when
# they are missing: the package is downloaded and unpacked under target/tools (not installed,
# which would start a Prometheus service). Used by scripts/check-deploy (promtool) and
# scripts/test (the live Prometheus suite finds them through PROMETHEUS_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/tools/prometheus
bin="$dir/usr/bin"
if [ -x "$bin/promtool" ] && [ -x "$bin/prometheus" ]; then
  echo "$PWD/$bin"
  exit 0
fi
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  dirname "$(command -v prometheus)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "tools: fetching Debian's prometheus package (prometheus, promtool)" >&2
if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
  apt-get update -qq >/dev/null
  (cd "$tmp" && apt-get download prometheus >/dev/null)
fi
mkdir -p "$dir"
dpkg-deb -x "$tmp"/prometheus_*.deb "$dir"
echo "$PWD/$bin"
