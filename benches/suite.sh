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
#   benches/suite.sh energy     # runs only the benchmarks named; the
#                               # table also shows the others' last runs
#
# DuckDB comes from PyPI on first use (see tests/api/pydeps.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

benches=(ingest_load cold_query energy recovery)
run=("${@:-${benches[@]}}")
out=target/bench-suite
mkdir -p "$out"
args=()
for b in "${run[@]}"; do args+=(--bench "$b"); done
cargo bench --no-run "${args[@]}"

for b in "${run[@]}"; do
  echo "== $b" >&2
  {
    printf 'suite-run\t%s, commit %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
      "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    cargo bench --bench "$b" 2>&1
  } | tee "$out/$b.log" >&2
done

cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
{
  echo "Measured on $(nproc) cores of ${cpu:-an unnamed CPU}, $mem of memory, by"
  echo "\`benches/suite.sh\`; each benchmark's run:"
  echo
  for b in "${benches[@]}"; do
    [ -f "$out/$b.log" ] || continue
    echo "- $b: $(sed -n 's/^suite-run\t//p' "$out/$b.log")"
  done
  echo
  echo "| benchmark | measured | wattline | DuckDB, same data | ratio |"
  echo "|---|---|---:|---:|---:|"
  for b in "${benches[@]}"; do
    [ -f "$out/$b.log" ] || continue
    awk -F'\t' -v b="$b" '$1 == "summary" {printf "| %s | %s | %s | %s | %s |\n", b, $2, $3, $4, $5}' "$out/$b.log"
  done
} | tee "$out/summary.md"
