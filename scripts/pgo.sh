#!/bin/sh
# Writes cmd/echowatch/default.pgo, the CPU profile that `go build` uses to
# optimize echowatch (Go's profile-guided optimization: hot calls inlined,
# hot interface calls devirtualized). The profile is the whole pipeline's,
# BenchmarkSense, on what a sensor reads: pcapgen's mixed traffic and its
# random-source flood, each with one and two workers, and router telemetry
# (sFlow and IPFIX replays of real exporters). Each workload runs for the
# same time, so each weighs the same in the profile.
#
# Rerun it after a change to the per-packet path and commit the profile
# with the change; a stale profile still builds, it only optimizes less.
#
#   sh scripts/pgo.sh              # SECONDS_EACH=4 by default
set -eu
cd "$(dirname "$0")/.."
each=${SECONDS_EACH:-4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/pcapgen" ./cmd/pcapgen
go test -c -o "$tmp/echowatch.test" ./cmd/echowatch
"$tmp/pcapgen" -bench mixed -packets 1000000 -o "$tmp/mixed.pcap"
"$tmp/pcapgen" -bench flood -packets 500000 -o "$tmp/flood.pcap"
td=capture/testdata/telemetry
"$tmp/pcapgen" -bench telemetry -from "$td/pmacct-sflow-mixed.pcap" -exporters 1 -packets 20000 -o "$tmp/sflow.pcap"
"$tmp/pcapgen" -bench telemetry -from "$td/softflowd-ipfix-mixed.pcap" -exporters 1 -packets 20000 -o "$tmp/ipfix.pcap"

# profile NAME CAPTURE [ARGS]: a CPU profile of echowatch -r CAPTURE ARGS.
profile() {
	name=$1 capture=$2
	shift 2
	echo "pgo: $name" >&2
	ECHOWATCH_BENCH=$capture ECHOWATCH_BENCH_ARGS="$*" "$tmp/echowatch.test" \
		-test.run '^$' -test.bench '^BenchmarkSense$' -test.benchtime "${each}s" \
		-test.cpuprofile "$tmp/$name.pprof" >/dev/null
}
profile mixed-1 "$tmp/mixed.pcap"
profile mixed-2 "$tmp/mixed.pcap" --workers 2
profile flood-1 "$tmp/flood.pcap"
profile flood-2 "$tmp/flood.pcap" --workers 2
profile sflow "$tmp/sflow.pcap" --telemetry --exporter any
profile ipfix "$tmp/ipfix.pcap" --telemetry --exporter any
go tool pprof -proto "$tmp"/*.pprof >cmd/echowatch/default.pgo
echo "pgo: wrote cmd/echowatch/default.pgo ($(wc -c <cmd/echowatch/default.pgo) bytes)" >&2
