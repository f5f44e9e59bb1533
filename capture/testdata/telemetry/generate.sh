#!/bin/sh
# Regenerates the real exporters' datagrams the telemetry tests and
# benchmarks replay, captured on the loopback by tcpdump as a collector
# would see them: softflowd's IPFIX and NetFlow v9 and pmacct's sFlow v5
# export of the bundled reflection capture (attack traffic only), and
# softflowd's IPFIX and pmacct's sFlow of pcapgen's mixed benchmark
# traffic (ordinary traffic with an attack inside, *-mixed.pcap). Needs
# root, Go, softflowd, pmacct and tcpdump (Debian: apt-get install
# softflowd pmacct tcpdump).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd ../../.. && go run ./cmd/pcapgen -bench mixed -packets 300000 -flows 20000 -o "$tmp/mixed.pcap")

# capture PORT N OUT CMD...: runs CMD with tcpdump listening on the
# loopback for UDP to PORT, and keeps the first N datagrams.
capture() {
	port=$1 n=$2 out=$3
	shift 3
	tcpdump -i lo -U -w "$tmp/all.pcap" "udp dst port $port" 2>/dev/null &
	dump=$!
	sleep 1
	"$@" >/dev/null 2>&1
	sleep 1
	kill "$dump"
	wait "$dump" || true
	tcpdump -r "$tmp/all.pcap" -c "$n" -w "$out" 2>/dev/null
}

# exports IN SUFFIX N: the three exports of capture IN.
exports() {
	in=$1 suffix=$2 n=$3
	capture 12055 "$n" "softflowd-ipfix$suffix.pcap" softflowd -c "$tmp/ctl" -p "$tmp/pid" -a -d -r "$in" -n 127.0.0.1:12055 -v 10 -A milli
	[ -n "$suffix" ] || capture 12056 "$n" softflowd-v9.pcap softflowd -c "$tmp/ctl" -p "$tmp/pid" -a -d -r "$in" -n 127.0.0.1:12056 -v 9 -A milli
	cat >"$tmp/sf.conf" <<CONF
daemonize: false
pcap_savefile: $in
plugins: sfprobe[sf]
sfprobe_receiver[sf]: 127.0.0.1:16343
sfprobe_agentip[sf]: 127.0.0.1
sfprobe_ifindex[sf]: 3
sampling_rate: 1
CONF
	capture 16343 "$n" "pmacct-sflow$suffix.pcap" pmacctd -f "$tmp/sf.conf"
}

exports "$PWD/../../../pcaps/reflection-in/capture.pcap" "" 100
exports "$tmp/mixed.pcap" -mixed 200

