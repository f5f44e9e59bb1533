#!/bin/sh
# Compares two echowatch binaries on one capture: ROUNDS rounds alternating
# them (so the machine's drift hits both alike), each pinned with taskset
# (CPU 0 for one worker, 0,1 for more), and prints the median wall time and
# the median user+sys CPU time of each.
#
#   sh bench/compare.sh OLD_BINARY NEW_BINARY CAPTURE WORKERS    # ROUNDS=7
#   ARGS="--telemetry --exporter any" sh bench/compare.sh ...      # more flags for both
set -eu
[ $# -eq 4 ] || { echo "usage: sh bench/compare.sh OLD NEW CAPTURE WORKERS" >&2; exit 2; }
old=$1 new=$2 cap=$3 workers=$4 rounds=${ROUNDS:-7}
cpus=0
[ "$workers" -ge 2 ] && cpus=0,1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat "$cap" >/dev/null # into the page cache
i=0
while [ "$i" -lt "$rounds" ]; do
	for b in old new; do
		eval bin=\$$b
		/usr/bin/time -f "%e %U %S" -o "$tmp/t" taskset -c "$cpus" "$bin" -r "$cap" --workers "$workers" --format eve ${ARGS:-} >/dev/null 2>&1
		awk '{ print $1, $2 + $3 }' "$tmp/t" >>"$tmp/$b"
	done
	i=$((i + 1))
done
median() { sort -n | awk -v n="$rounds" 'NR == int((n + 1) / 2) { print $1 }'; }
printf '%s, %s workers, median of %d: %s %ss wall %ss CPU | %s %ss wall %ss CPU\n' "$cap" "$workers" "$rounds" \
	"$old" "$(cut -d' ' -f1 "$tmp/old" | median)" "$(cut -d' ' -f2 "$tmp/old" | median)" \
	"$new" "$(cut -d' ' -f1 "$tmp/new" | median)" "$(cut -d' ' -f2 "$tmp/new" | median)"
