#!/usr/bin/env bash
# The performance suite in one command, at the spec's scale (50,000
# sensors, 2,500 buildings): durable ingest over HTTP, raw-data SQL beside
# DuckDB on the same files, bytes per reading, building energy through
# /energy and through SQL, flush and recovery. Builds the benchmarks once
# (release), runs them one after another (each alone on the machine), and
# prints one table of their figures, with the date, the machine and the
# command, as BENCHMARKS.md quotes it. Each benchmark's own output is kept
# in target/bench-suite/<name>.log.
#
#   benches/suite.sh            # about 20 minutes on 2 cores
#
# DuckDB comes from PyPI on first use (see tests/api/pydeps.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

benches=(ingest_load cold_query energy recovery)
out=target/bench-suite
mkdir -p "$out"
args=()
for b in "${benches[@]}"; do args+=(--bench "$b"); done
cargo bench --no-run "${args[@]}"

for b in "${benches[@]}"; do
  echo "== $b" >&2
  cargo bench --bench "$b" 2>&1 | tee "$out/$b.log" >&2
done

cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores of ${cpu:-an unnamed CPU}, $mem of memory,"
  echo "by \`benches/suite.sh\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo "| benchmark | measured | wattline | DuckDB, same data | ratio |"
  echo "|---|---|---:|---:|---:|"
  for b in "${benches[@]}"; do
    awk -F'\t' -v b="$b" '$1 == "summary" {printf "| %s | %s | %s | %s | %s |\n", b, $2, $3, $4, $5}' "$out/$b.log"
  done
} | tee "$out/summary.md"
