#!/bin/sh
# End-to-end benchmark: generates the benchmark captures (once) and times,
# in the same run, echowatch, tcpdump and cat on them. Prints one table with
# the median of RUNS runs: seconds, packets per second, ratio to tcpdump and
# peak resident memory.
#
#   sh bench/run.sh                 # 10M-packet mixed capture, 5M flood
#   PACKETS=2000000 sh bench/run.sh # smaller
set -eu
cd "$(dirname "$0")/.."
PACKETS=${PACKETS:-10000000}
FLOOD=${FLOOD:-5000000}
RUNS=${RUNS:-3}
CPU=${CPU:-0}
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

# measure NAME PACKETS CMD...: prints "NAME seconds rss_kib" (median run).
measure() {
	name=$1 n=$2
	shift 2
	: >"$out/runs.txt"
	i=0
	while [ "$i" -lt "$RUNS" ]; do
		/usr/bin/time -f "%e %M" -o "$out/time.txt" taskset -c "$CPU" "$@" >/dev/null 2>"$out/stderr.txt" || {
			echo "bench: $name failed:" >&2
			cat "$out/stderr.txt" >&2
			exit 1
		}
		cat "$out/time.txt" >>"$out/runs.txt"
		i=$((i + 1))
	done
	sort -n "$out/runs.txt" | awk -v name="$name" -v n="$n" -v runs="$RUNS" '
		NR == int((runs + 1) / 2) { printf "%s %d %s %s\n", name, n, $1, $2 }'
}

{
	measure "cat" "$PACKETS" cat "$mixed"
	measure "tcpdump -r -w /dev/null" "$PACKETS" tcpdump -r "$mixed" -w /dev/null
	measure "echowatch (1 worker)" "$PACKETS" bin/echowatch -r "$mixed" --format eve
	measure "echowatch flood" "$FLOOD" bin/echowatch -r "$flood" --format eve
} >"$out/results.txt"

echo "machine: $(nproc) cores, $(awk '/model name/ { $1 = $2 = $3 = ""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), pinned to CPU $CPU"
echo "mixed capture: $PACKETS packets; flood: $FLOOD packets; median of $RUNS runs"
echo
awk '
	{ n = $(NF - 2); s = $(NF - 1); rss = $NF; $(NF - 2) = $(NF - 1) = $NF = ""; name = $0; sub(/ +$/, "", name)
	  rate[NR] = (s > 0 ? n / s : 0); names[NR] = name; secs[NR] = s; mem[NR] = rss
	  if (name ~ /^tcpdump/) td = rate[NR] }
	END {
	  printf "| %-26s | %8s | %12s | %10s | %9s |\n", "what", "seconds", "packets/s", "vs tcpdump", "peak RSS"
	  printf "|%s|%s|%s|%s|%s|\n", "----------------------------", "----------", "--------------", "------------", "-----------"
	  for (i = 1; i <= NR; i++)
	    printf "| %-26s | %8.2f | %12.0f | %9.2fx | %5.0f MiB |\n", names[i], secs[i], rate[i], (td > 0 ? rate[i] / td : 0), mem[i] / 1024
	}' "$out/results.txt"
