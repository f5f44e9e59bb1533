#!/bin/sh
# Router telemetry benchmark: replays of real exporters' datagrams
# (capture/testdata/telemetry: pmacct's sFlow and softflowd's IPFIX of
# pcapgen's mixed traffic and of the bundled reflection), repeated by
# pcapgen -bench telemetry, read by echowatch -r FILE --telemetry on one
# pinned CPU: decoded and detected, the whole pipeline. Prints the median
# of RUNS runs: seconds, samples or records per second, peak resident
# memory; the 1000-exporter case shows memory stays bounded.
#
#   sh bench/telemetry.sh
#   DATAGRAMS=100000 RUNS=3 sh bench/telemetry.sh
set -eu
cd "$(dirname "$0")/.."
DATAGRAMS=${DATAGRAMS:-200000}
RUNS=${RUNS:-5}
CPU=${CPU:-0}
out=bench/out
mkdir -p "$out" bin
sh scripts/deps.sh gcc libc6-dev libpcap-dev time
go build -o bin/echowatch ./cmd/echowatch
go build -o bin/pcapgen ./cmd/pcapgen
td=capture/testdata/telemetry

# gen NAME FROM EXPORTERS: a replay of FROM's datagrams from EXPORTERS
# exporters, once.
gen() {
	f="$out/telemetry-$1-$DATAGRAMS.pcap"
	[ -f "$f" ] || bin/pcapgen -bench telemetry -from "$td/$2" -exporters "$3" -packets "$DATAGRAMS" -o "$f"
	cat "$f" >/dev/null
}
gen sflow-mixed pmacct-sflow-mixed.pcap 1
gen sflow-attack pmacct-sflow.pcap 1
gen ipfix-mixed softflowd-ipfix-mixed.pcap 1
gen ipfix-attack softflowd-ipfix.pcap 1
gen ipfix-1000 softflowd-ipfix-mixed.pcap 1000

: >"$out/telemetry.txt"
for name in sflow-mixed sflow-attack ipfix-mixed ipfix-attack ipfix-1000; do
	f="$out/telemetry-$name-$DATAGRAMS.pcap"
	# What the replay holds: the final stats line counts it.
	units=$(bin/echowatch -r "$f" --telemetry --exporter any --stats --format text |
		awk '/ stats: / { for (i = 1; i < NF; i++) { if ($i == "samples") s = $(i + 1); if ($i == "records") r = $(i + 1); if ($i == "exporters") e = $(i + 1) } }
		END { print s + r, e }')
	: >"$out/runs.txt"
	i=0
	while [ "$i" -lt "$RUNS" ]; do
		/usr/bin/time -f "%e %M" -o "$out/time.txt" taskset -c "$CPU" bin/echowatch -r "$f" --telemetry --exporter any --format eve >/dev/null
		cat "$out/time.txt" >>"$out/runs.txt"
		i=$((i + 1))
	done
	sort -n "$out/runs.txt" | awk -v name="$name" -v units="$units" -v runs="$RUNS" '
		NR == int((runs + 1) / 2) { split(units, u, " "); printf "%s|%d|%d|%s|%s\n", name, u[1], u[2], $1, $2 }' >>"$out/telemetry.txt"
done

echo "machine: $(nproc) cores, $(awk '/model name/ { $1 = $2 = $3 = ""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), $(uname -r)"
echo "$DATAGRAMS datagrams a replay, one pinned CPU, median of $RUNS runs"
echo
awk -F'|' '
	BEGIN { printf "| %-13s | %9s | %9s | %7s | %18s | %8s |\n", "replay", "exporters", "units", "seconds", "samples/records/s", "peak RSS"
	        printf "|%s|%s|%s|%s|%s|%s|\n", "---------------", "-----------", "-----------", "---------", "--------------------", "----------" }
	{ printf "| %-13s | %9d | %9d | %7.2f | %18.0f | %4.0f MiB |\n", $1, $3, $2, $4, ($4 > 0 ? $2 / $4 : 0), $5 / 1024 }' "$out/telemetry.txt"
