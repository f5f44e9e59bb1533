#!/bin/sh
# End-to-end benchmark: generates the benchmark captures (once) and times,
# in the same run, echowatch with one and two workers, the random-source
# flood, tcpdump and cat on them. Prints one table with the median of RUNS
# runs: seconds, packets per second, ratios to tcpdump and to one worker,
# and peak resident memory. One worker, tcpdump and cat are pinned to CPU
# CPU; two workers to CPUS.
#
#   sh bench/run.sh                 # 10M-packet mixed capture, 5M flood
#   PACKETS=2000000 RUNS=3 sh bench/run.sh
#   LIVE=0 sh bench/run.sh          # without the live table (bench/live.sh)
set -eu
cd "$(dirname "$0")/.."
PACKETS=${PACKETS:-10000000}
FLOOD=${FLOOD:-5000000}
RUNS=${RUNS:-5}
CPU=${CPU:-0}
CPUS=${CPUS:-0,1}
out=bench/out
mkdir -p "$out" bin
sh scripts/deps.sh gcc libc6-dev libpcap-dev tcpdump time
go build -o bin/echowatch ./cmd/echowatch
go build -o bin/pcapgen ./cmd/pcapgen
mixed="$out/mixed-$PACKETS.pcap"
flood="$out/flood-$FLOOD.pcap"
[ -f "$mixed" ] || bin/pcapgen -bench mixed -packets "$PACKETS" -o "$mixed"
[ -f "$flood" ] || bin/pcapgen -bench flood -packets "$FLOOD" -o "$flood"
# Warm the page cache so every contender reads from memory.
cat "$mixed" "$flood" >/dev/null

# measure NAME PACKETS CPUS CMD...: appends "NAME|PACKETS|CPUS|seconds|rss_kib"
# (the median run by time) to the results.
measure() {
	name=$1 n=$2 cpus=$3
	shift 3
	: >"$out/runs.txt"
	i=0
	while [ "$i" -lt "$RUNS" ]; do
		/usr/bin/time -f "%e %M" -o "$out/time.txt" taskset -c "$cpus" "$@" >/dev/null 2>"$out/stderr.txt" || {
			echo "bench: $name failed:" >&2
			cat "$out/stderr.txt" >&2
			exit 1
		}
		cat "$out/time.txt" >>"$out/runs.txt"
		i=$((i + 1))
	done
	sort -n "$out/runs.txt" | awk -v name="$name" -v n="$n" -v cpus="$cpus" -v runs="$RUNS" '
		NR == int((runs + 1) / 2) { printf "%s|%d|%s|%s|%s\n", name, n, cpus, $1, $2 }' >>"$out/results.txt"
}

: >"$out/results.txt"
measure "cat" "$PACKETS" "$CPU" cat "$mixed"
measure "tcpdump -r -w /dev/null" "$PACKETS" "$CPU" tcpdump -r "$mixed" -w /dev/null
measure "echowatch, 1 worker" "$PACKETS" "$CPU" bin/echowatch -r "$mixed" --format eve
measure "echowatch, 2 workers" "$PACKETS" "$CPUS" bin/echowatch -r "$mixed" --format eve --workers 2
measure "echowatch flood, 1 worker" "$FLOOD" "$CPU" bin/echowatch -r "$flood" --format eve
measure "echowatch flood, 2 workers" "$FLOOD" "$CPUS" bin/echowatch -r "$flood" --format eve --workers 2

echo "machine: $(nproc) cores, $(awk '/model name/ { $1 = $2 = $3 = ""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), $(uname -r)"
echo "mixed capture: $PACKETS packets, $(du -m "$mixed" | cut -f1) MiB; flood: $FLOOD packets, each from a new source; median of $RUNS runs"
echo
awk -F'|' '
	{ names[NR] = $1; n[NR] = $2; cpus[NR] = $3; secs[NR] = $4; mem[NR] = $5
	  rate[NR] = ($4 > 0 ? $2 / $4 : 0)
	  if ($1 ~ /^tcpdump/) td = rate[NR]
	  if ($1 == "echowatch, 1 worker") one = rate[NR]
	  if ($1 == "echowatch flood, 1 worker") flood1 = rate[NR] }
	END {
	  printf "| %-26s | %-4s | %7s | %10s | %10s | %11s | %8s |\n", "what", "CPUs", "seconds", "packets/s", "vs tcpdump", "vs 1 worker", "peak RSS"
	  printf "|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------", "------", "---------", "------------", "------------", "-------------", "----------"
	  for (i = 1; i <= NR; i++) {
	    base = (names[i] ~ /flood/ ? flood1 : one)
	    vs1 = (names[i] ~ /^echowatch/ && base > 0 ? sprintf("%10.2fx", rate[i] / base) : "")
	    vstd = (names[i] ~ /flood/ ? "" : sprintf("%9.2fx", rate[i] / td))
	    printf "| %-26s | %-4s | %7.2f | %10.0f | %10s | %11s | %4.0f MiB |\n", names[i], cpus[i], secs[i], rate[i], vstd, vs1, mem[i] / 1024
	  }
	}' "$out/results.txt"

# The live ceilings (bench/live.sh: network namespaces, trafgen, a cgroup
# quota), where this machine allows them: LIVE=0 skips them, and live.sh
# exits 2, saying why, where it cannot run (not root, one CPU, no cgroup).
if [ "${LIVE:-1}" != 0 ]; then
	echo
	rc=0
	sh bench/live.sh || rc=$?
	[ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || exit "$rc"
fi
