#!/bin/sh
# Writes cmd/echowatch/default.pgo, the CPU profile that `go build` uses to
# optimize echowatch (Go's profile-guided optimization: hot calls inlined,
# hot interface calls devirtualized). The profile is the whole pipeline's,
# BenchmarkSense, on what a sensor reads: pcapgen's mixed traffic and its
# random-source flood, each with one and two workers, and router telemetry
# (sFlow and IPFIX replays of real exporters). A profile counts CPU time:
# each workload runs for about the same, two workers for half the wall
# time of one, so that each weighs about the same in the profile.
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
sh scripts/deps.sh gcc libc6-dev libpcap-dev
go build -o "$tmp/pcapgen" ./cmd/pcapgen
go test -c -o "$tmp/echowatch.test" ./cmd/echowatch
"$tmp/pcapgen" -bench mixed -packets 1000000 -o "$tmp/mixed.pcap"
"$tmp/pcapgen" -bench flood -packets 500000 -o "$tmp/flood.pcap"
td=capture/testdata/telemetry
"$tmp/pcapgen" -bench telemetry -from "$td/pmacct-sflow-mixed.pcap" -exporters 1 -packets 20000 -o "$tmp/sflow.pcap"
"$tmp/pcapgen" -bench telemetry -from "$td/softflowd-ipfix-mixed.pcap" -exporters 1 -packets 20000 -o "$tmp/ipfix.pcap"

# profile NAME SECONDS CAPTURE [ARGS]: a CPU profile of echowatch -r
# CAPTURE ARGS, run for SECONDS.
profile() {
	name=$1 secs=$2 capture=$3
	shift 3
	echo "pgo: $name" >&2
	ECHOWATCH_BENCH=$capture ECHOWATCH_BENCH_ARGS="$*" "$tmp/echowatch.test" \
		-test.run '^$' -test.bench '^BenchmarkSense$' -test.benchtime "$secs" \
		-test.cpuprofile "$tmp/$name.pprof" >/dev/null
}
profile mixed-1 "${each}s" "$tmp/mixed.pcap"
profile mixed-2 "$((each * 500))ms" "$tmp/mixed.pcap" --workers 2
profile flood-1 "${each}s" "$tmp/flood.pcap"
profile flood-2 "$((each * 500))ms" "$tmp/flood.pcap" --workers 2
profile sflow "${each}s" "$tmp/sflow.pcap" --telemetry --exporter any
profile ipfix "${each}s" "$tmp/ipfix.pcap" --telemetry --exporter any
# Written whole or not at all: a torn profile would fail every build.
go tool pprof -proto "$tmp"/*.pprof >"$tmp/default.pgo"
mv "$tmp/default.pgo" cmd/echowatch/default.pgo
echo "pgo: wrote cmd/echowatch/default.pgo ($(wc -c <cmd/echowatch/default.pgo) bytes)" >&2
