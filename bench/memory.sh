#!/bin/sh
# Memory benchmark: generates each memory flood (bin/pcapgen -bench KIND, see
# pcapgen -h) in a temporary directory, one at a time, runs echowatch on it
# with its default settings (one worker, alerts to standard output) and
# prints one table: the peak resident memory (/usr/bin/time's maximum
# resident set size), the seconds, and whether the real incidents planted
# in the flood, an echo reflection toward 198.51.100.10 and an echo-chargen
# loop between 198.51.100.7 and 198.51.100.19, were reported, start and end.
# The captures (up to 850 MB each) are removed as soon as they are measured.
#
#   sh bench/memory.sh                        # the four floods
#   ARGS="--max-memory 128MiB" sh bench/memory.sh
#   FLOODS=echo-flows PACKETS=400000 sh bench/memory.sh
#   ECHOWATCH=/tmp/echowatch-old sh bench/memory.sh   # another build
set -eu
cd "$(dirname "$0")/.."
FLOODS=${FLOODS:-sources targets echo-flows loop-flows}
PACKETS=${PACKETS:-0} # 0: each flood's own count
ARGS=${ARGS:-}
sh scripts/deps.sh gcc libc6-dev libpcap-dev time
mkdir -p bin
if [ -z "${ECHOWATCH:-}" ]; then
	ECHOWATCH=bin/echowatch
	go build -o bin/echowatch ./cmd/echowatch
fi
go build -o bin/pcapgen ./cmd/pcapgen
dir=$(mktemp -d "${TMPDIR:-/tmp}/echowatch-memory.XXXXXX")
trap 'rm -rf "$dir"' EXIT
trap 'exit 1' INT TERM

# seen A B: "yes" if an alert line says both A and B.
seen() {
	if grep -F -- "$1" "$dir/alerts" | grep -qF -- "$2"; then echo yes; else echo NO; fi
}

: >"$dir/results"
for kind in $FLOODS; do
	bin/pcapgen -v -bench "$kind" -packets "$PACKETS" -o "$dir/$kind.pcap" 2>"$dir/gen"
	packets=$(sed -n 's/.*: \([0-9]*\) packets in .*/\1/p' "$dir/gen")
	# shellcheck disable=SC2086 # ARGS is a list of flags
	/usr/bin/time -f "%e %M" -o "$dir/time" "$ECHOWATCH" -r "$dir/$kind.pcap" --format eve $ARGS \
		>"$dir/alerts" 2>"$dir/stderr" || {
		echo "bench: echowatch on $kind failed:" >&2
		cat "$dir/stderr" >&2
		exit 1
	}
	rm -f "$dir/$kind.pcap"
	refl='"dest_ip":"198.51.100.10"'
	loop='"src_ip":"198.51.100.7","src_port":7,"dest_ip":"198.51.100.19","dest_port":19'
	rs=$(seen "$refl" '"kind":"reflection","phase":"start"')
	re=$(seen "$refl" '"kind":"reflection","phase":"end"')
	ls=$(seen "$loop" '"kind":"loop","phase":"start"')
	le=$(seen "$loop" '"kind":"loop","phase":"end"')
	alerts=$(grep -c '"event_type":"alert"' "$dir/alerts" || true)
	read -r secs kib <"$dir/time"
	echo "$kind|$packets|$secs|$kib|$rs, $re|$ls, $le|$alerts" >>"$dir/results"
done

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')
echo "machine: $(nproc) cores, ${cpu:-$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)}, $(uname -r), $(go version | cut -d' ' -f3)"
echo "command: $ECHOWATCH -r FLOOD.pcap --format eve${ARGS:+ $ARGS}"
echo
printf "| %-10s | %10s | %7s | %8s | %-21s | %-15s | %7s |\n" "flood" "packets" "seconds" "peak RSS" "reflection start, end" "loop start, end" "alerts"
printf "|%s|%s|%s|%s|%s|%s|%s|\n" "------------" "------------" "---------" "----------" "-----------------------" "-----------------" "---------"
awk -F'|' '{ printf "| %-10s | %10d | %7.2f | %4.0f MiB | %-21s | %-15s | %7d |\n", $1, $2, $3, $4 / 1024, $5, $6, $7 }' "$dir/results"
