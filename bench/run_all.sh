#!/usr/bin/env bash
# Runs every benchmark in turn (they share 2 cores, so never in parallel) and prints their figures.
# Figures are copied into docs/BENCHMARKS.md by hand, with the date and the commit they came from.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== commit $(git rev-parse --short HEAD), $(date -u +%F)"
for bench in bench/modules_noop.py bench/guest_boot.py bench/site_converge.py bench/fleet_converge.py \
             bench/manager_forwarding.py bench/manager_flood.py bench/manager_placement.py bench/e2e.py; do
  if [ -f "$bench" ]; then
    echo "== $bench"
    "$PY" "$bench"
  fi
done
