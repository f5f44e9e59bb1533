#!/bin/sh
# Live-capture ceiling (issue 14): how many packets per second of one core
# each contender captures without a drop. Two network namespaces joined by
# a veth pair; trafgen sends from one on its own core, at its own full
# speed R, a profile of frames (ordinary: TCP and UDP between many hosts,
# from 60 to 1514 bytes; flood: 60-byte UDP frames to port 7 of one
# target from random sources); the contender captures in the other, pinned
# to SENSE_CPU, in a cgroup whose CPU quota is lowered until it drops or
# misses a frame. With q the smallest quota at which it saw every frame,
# its ceiling is R / q packets per second of one core. CPU ns per packet is
# the cgroup's CPU time over the frames, at a full core.
#
#   sh bench/live.sh                               # needs root, 2 CPUs
#   FLOOD_FRAMES=3000000 PROFILES=flood sh bench/live.sh
#
# trafgen -P 1 pins its sender to CPU 0 whatever its affinity, so the
# contenders get CPU 1. Exits 2, saying why, where it cannot run.
set -eu
cd "$(dirname "$0")/.."
ORDINARY_FRAMES=${ORDINARY_FRAMES:-1000000}
FLOOD_FRAMES=${FLOOD_FRAMES:-1500000}
PROFILES=${PROFILES:-ordinary flood}
CONTENDERS=${CONTENDERS:-tcpdump afpacket pcap}
QUOTAS=${QUOTAS:-100 70 50 35 25 18 12 8 5} # percent of one core, descending
SENSE_CPU=${SENSE_CPU:-1}
PERIOD=${PERIOD:-20000} # µs; short, so that a throttled contender's backlog fits its
                        # buffer, and 5% of it still above the kernel's 1 ms minimum
GRACE=${GRACE:-1.5}     # s between the sender's end and the contender's stop: more
                        # than libpcap's 1 s timeout, which holds a ring block back
out=bench/out
send=ewl-send-$$
sense=ewl-sense-$$

skip() {
	echo "live: cannot run here: $*" >&2
	exit 2
}
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, cgroups, capture)"
[ "$(nproc)" -ge 2 ] || skip "needs 2 CPUs, one to send and one to capture"

# The CPU controller: cgroup v2 where it has it, else v1's cpu and cpuacct.
cgs="" quota="" usage=""
for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
	if grep -qw cpu "$root/cgroup.controllers" 2>/dev/null; then
		grep -qw cpu "$root/cgroup.subtree_control" || echo +cpu >"$root/cgroup.subtree_control"
		cgs=$root/ewl-live-$$ quota=v2 usage=$root/ewl-live-$$/cpu.stat
		break
	fi
done
if [ -z "$quota" ] && [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
	acct=/sys/fs/cgroup/cpuacct
	[ -f /sys/fs/cgroup/cpu/cpuacct.usage ] && acct=/sys/fs/cgroup/cpu
	[ -f "$acct/cpuacct.usage" ] || skip "no cpuacct cgroup to measure CPU time"
	cgs=/sys/fs/cgroup/cpu/ewl-live-$$ quota=v1 usage=$acct/ewl-live-$$/cpuacct.usage
	[ "$acct" = /sys/fs/cgroup/cpu ] || cgs="$cgs $acct/ewl-live-$$"
fi
[ -n "$quota" ] || skip "no cgroup with the cpu controller under /sys/fs/cgroup"

sh scripts/deps.sh gcc libc6-dev libpcap-dev tcpdump netsniff-ng iproute2
mkdir -p "$out" bin
go build -o bin/echowatch ./cmd/echowatch

pid=""
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	ip netns del "$send" 2>/dev/null || true
	ip netns del "$sense" 2>/dev/null || true
	for d in $cgs; do rmdir "$d" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$send" || skip "ip netns add failed"
ip netns add "$sense"
ip link add ewl0 netns "$send" type veth peer name ewl1 netns "$sense"
# No IPv6 on either side: no router solicitation or MLD report among the frames
# counted. The sensor's side has no address, so it sends nothing.
for ns in "$send" "$sense"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$send" link set ewl0 up
ip -n "$sense" link set ewl1 up
for d in $cgs; do mkdir -p "$d"; done
export cgs

# The profiles, as trafgen configurations. Fields set with drnd() get their
# checksums recomputed per frame by trafgen.
eth="eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01)"
tcpdata="{ $eth, ipv4(sa=192.0.2.10, sa[3]=drnd(), da=10.1.0.0, da[2:2]=drnd(), ttl=60, df), tcp(sp=443, dp=drnd(1024, 65535), seq=drnd(), aseq=drnd(), ack, psh, win=502), fill(0x41, 1448) }"
tcpack="{ $eth, ipv4(sa=10.1.0.0, sa[2:2]=drnd(), da=192.0.2.10, da[3]=drnd(), ttl=64, df), tcp(sp=drnd(1024, 65535), dp=443, seq=drnd(), aseq=drnd(), ack, win=1024) }"
quic="{ $eth, ipv4(sa=203.0.113.0, sa[3]=drnd(), da=10.1.0.0, da[2:2]=drnd(), ttl=55), udp(sp=443, dp=drnd(1024, 65535)), fill(0x44, 1200) }"
# Four templates at most: trafgen 0.6.8 dies ("xfree: NULL pointer given as
# argument") on a configuration of five or more with dynamic fields.
cat >"$out/live-ordinary.cfg" <<EOF
/* ordinary: a web download segment and its ACK, a DNS query, QUIC */
$tcpdata
$tcpack
{ $eth, ipv4(sa=10.1.0.0, sa[2:2]=drnd(), da=198.51.100.53, ttl=64), udp(sp=drnd(1024, 65535), dp=53), fill(0x62, 40) }
$quic
EOF
cat >"$out/live-flood.cfg" <<EOF
/* flood: 60-byte frames to UDP port 7 of one target, random sources */
{ $eth, ipv4(sa=drnd(), da=198.51.100.77, ttl=64), udp(sp=drnd(), dp=7), fill(0, 18) }
EOF

rx() { ip netns exec "$sense" cat /sys/class/net/ewl1/statistics/rx_packets; }

# cpu_ns: the contenders' cgroup's CPU time so far, in ns.
cpu_ns() {
	if [ "$quota" = v2 ]; then
		awk '$1 == "usage_usec" { printf "%.0f\n", $2 * 1000 }' "$usage"
	else
		cat "$usage"
	fi
}

# set_quota Q: Q percent of one core per PERIOD; 100 lifts the limit.
set_quota() {
	d=${cgs%% *}
	[ "$(($1 * PERIOD / 100))" -ge 1000 ] || {
		echo "live: $1% of PERIOD=$PERIOD µs is under the kernel's 1000 µs minimum" >&2
		exit 1
	}
	if [ "$quota" = v2 ]; then
		if [ "$1" -ge 100 ]; then echo "max $PERIOD"; else echo "$(($1 * PERIOD / 100)) $PERIOD"; fi >"$d/cpu.max"
	else
		echo -1 >"$d/cpu.cfs_quota_us"
		echo "$PERIOD" >"$d/cpu.cfs_period_us"
		[ "$1" -ge 100 ] || echo "$(($1 * PERIOD / 100))" >"$d/cpu.cfs_quota_us"
	fi || exit 1
}

# trial PROFILE CONTENDER Q: sends the profile's frames once, the contender
# capturing under quota Q. Sets sent (frames that reached ewl1), rate (sent
# per second of sending), seen, dropped, ns (cgroup CPU time while sending);
# true when the contender saw every frame and dropped none.
trial() {
	case $2 in
	tcpdump) set -- "$1" "$2" "$3" tcpdump -i ewl1 -w /dev/null ;;
	afpacket | pcap) set -- "$1" "$2" "$3" bin/echowatch -i ewl1 --capture "$2" --workers 1 --stats --format eve ;;
	*) echo "live: unknown contender $2" >&2 && exit 1 ;;
	esac
	profile=$1 who=$2 q=$3
	shift 3
	case $profile in
	ordinary) n=$ORDINARY_FRAMES ;;
	flood) n=$FLOOD_FRAMES ;;
	esac
	set_quota "$q" || exit 1
	sh -c 'for d in $cgs; do echo $$ >"$d/cgroup.procs"; done; exec "$@"' sh \
		ip netns exec "$sense" taskset -c "$SENSE_CPU" "$@" >"$out/live-stdout.txt" 2>"$out/live-stderr.txt" &
	pid=$!
	i=0
	until grep -q "listening on\|capture started" "$out/live-stderr.txt"; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "live: $who did not start:" >&2
			cat "$out/live-stderr.txt" >&2
			exit 1
		fi
		sleep 0.1
	done
	sleep 0.2
	rx0=$(rx) ns0=$(cpu_ns)
	timeout 120 ip netns exec "$send" trafgen -P 1 --no-sock-mem -Q -o ewl0 -i "$out/live-$profile.cfg" -n "$n" >"$out/live-trafgen.txt" 2>&1 || {
		echo "live: trafgen failed:" >&2
		cat "$out/live-trafgen.txt" >&2
		exit 1
	}
	sleep "$GRACE"
	ns=$(($(cpu_ns) - ns0)) sent=$(($(rx) - rx0))
	kill -INT "$pid"
	wait "$pid" || {
		echo "live: $who failed:" >&2
		cat "$out/live-stderr.txt" >&2
		exit 1
	}
	pid=""
	# "\r   2 sec, 216940 usec on CPU0 (1000000 packets)"
	secs=$(tr -d '\r' <"$out/live-trafgen.txt" | awk '/usec on CPU/ { print $1 + $3 / 1e6 }')
	rate=$(awk -v n="$sent" -v s="$secs" 'BEGIN { printf "%.0f\n", (s > 0 ? n / s : 0) }')
	if [ "$who" = tcpdump ]; then
		set -- $(awk '/packets captured/ { c = $1 } /dropped by/ { d += $1 } END { print c + 0, d + 0 }' "$out/live-stderr.txt")
	else
		# The final stats event: frames decoded, and the kernel's, the
		# interface's and the dealer's drops.
		line=$(grep '"event_type":"stats"' "$out/live-stdout.txt" | tail -n 1)
		field() { printf '%s\n' "$line" | grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2; }
		set -- "$(printf '%s\n' "$line" | grep -o '"decoder":{"frames":[0-9]*' | cut -d: -f3)" \
			$(($(field kernel_drops) + $(field kernel_ifdrops) + $(field queue_drops)))
	fi
	seen=$1 dropped=$2
	verdict=ok
	[ "$seen" -ge "$sent" ] && [ "$dropped" -eq 0 ] || verdict=short
	echo "live: $profile, $who at $q%: $sent frames at $rate/s, seen $seen, dropped $dropped, $((ns / (sent > 0 ? sent : 1))) CPU ns/frame: $verdict" >&2
	[ "$verdict" = ok ]
}

# ceiling PROFILE CONTENDER: lowers the quota along QUOTAS until a trial
# falls short twice, then halves the gap to the last quota that passed twice;
# appends "profile|contender|sent|rate|quota|ceiling|ns per frame".
ceiling() {
	pass="" fail="" full="" best=""
	try() { trial "$1" "$2" "$3" || trial "$1" "$2" "$3"; }
	for q in $QUOTAS; do
		if try "$1" "$2" "$q"; then
			pass=$q best="$sent $rate"
			[ -n "$full" ] || full="$sent $rate $((ns / (sent > 0 ? sent : 1)))"
		else
			fail=$q
			[ -n "$full" ] || full="$sent $rate $((ns / (sent > 0 ? sent : 1)))"
			break
		fi
	done
	if [ -n "$pass" ] && [ -n "$fail" ]; then
		for _ in 1 2; do
			mid=$(((pass + fail) / 2))
			[ "$mid" -ne "$pass" ] && [ "$mid" -ne "$fail" ] || break
			if try "$1" "$2" "$mid"; then pass=$mid best="$sent $rate"; else fail=$mid; fi
		done
	fi
	set -- "$1" "$2" $full
	if [ -n "$pass" ]; then
		set -- "$@" "$pass%" $(echo "$best $pass" | awk '{ printf "%.0f", $2 * 100 / $3 }')
	else
		set -- "$@" "none" "<$4"
	fi
	echo "$1|$2|$3|$4|$6|$7|$5" >>"$out/live-results.txt"
}

: >"$out/live-results.txt"
for p in $PROFILES; do
	for c in $CONTENDERS; do
		ceiling "$p" "$c"
	done
done

echo "machine: $(nproc) cores, $(awk '/model name/ { $1 = $2 = $3 = ""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), $(uname -r)"
echo "live: trafgen on CPU 0 at its full speed, the contender on CPU $SENSE_CPU under a cgroup quota (period $PERIOD µs); ordinary $ORDINARY_FRAMES frames, flood $FLOOD_FRAMES per trial"
echo
awk -F'|' '
	BEGIN {
	  name["tcpdump"] = "tcpdump -w /dev/null"
	  name["afpacket"] = "echowatch afpacket, 1 worker"
	  name["pcap"] = "echowatch pcap, 1 worker"
	  printf "| %-8s | %-29s | %7s | %8s | %9s | %10s | %11s |\n", "profile", "contender", "frames", "frames/s", "min quota", "ceiling/s", "CPU ns/pkt"
	  printf "|%s|%s|%s|%s|%s|%s|%s|\n", "----------", "-------------------------------", "---------", "----------", "-----------", "------------", "-------------"
	}
	{ printf "| %-8s | %-29s | %7d | %8d | %9s | %10s | %11d |\n", $1, ($2 in name ? name[$2] : $2), $3, $4, $5, $6, $7 }' "$out/live-results.txt"
