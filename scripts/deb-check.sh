#!/bin/sh
# Builds the Debian package (scripts/deb.sh), installs it with dpkg -i,
# checks what it installed (the unit with systemd-analyze, the man page,
# the configuration, by running the demo through the installed binary with
# it), and purges it, checking that nothing is left. Needs root; exits 2,
# saying why, without it.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "deb-check: needs root to install a package" >&2; exit 2; }
if dpkg-query -W -f='${Status}' echowatch 2>/dev/null | grep -q "ok installed"; then
	echo "deb-check: an echowatch package is installed already; not touching it" >&2
	exit 2
fi
fail() { echo "deb-check: $*" >&2; exit 1; }
deb=$(sh scripts/deb.sh)
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
trap 'dpkg --purge echowatch >/dev/null 2>&1 || true' EXIT
[ -x /usr/bin/echowatch ] || fail "no /usr/bin/echowatch"
# The demo through the installed binary, with the installed configuration
# (its file output replaced by standard output).
n=$(/usr/bin/echowatch --config /etc/echowatch/echowatch.yaml -r pcaps/demo.pcap --output stdout --format eve |
	grep -c '"event_type":"alert"') || true
[ "$n" -eq 8 ] || fail "the installed echowatch gave $n alerts on the demo, want 8"
/usr/bin/echowatch --version | grep -q "^echowatch $(dpkg-query -W -f='${Version}' echowatch)$" ||
	fail "--version does not name the package's version"
man -l /usr/share/man/man8/echowatch.8.gz 2>/dev/null | grep -q -- '--home-net' || fail "the man page does not render the options"
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify --man=no /lib/systemd/system/echowatch.service || fail "systemd-analyze finds fault with the unit"
fi
grep -q '^AmbientCapabilities=CAP_NET_RAW$' /lib/systemd/system/echowatch.service || fail "the unit grants no CAP_NET_RAW"
grep -q '^DynamicUser=yes$' /lib/systemd/system/echowatch.service || fail "the unit has no DynamicUser"
dpkg --purge echowatch >/dev/null || fail "dpkg --purge failed"
trap - EXIT
for f in /usr/bin/echowatch /etc/echowatch /etc/default/echowatch /lib/systemd/system/echowatch.service \
	/usr/share/man/man8/echowatch.8.gz /usr/share/doc/echowatch; do
	[ ! -e "$f" ] || fail "$f is left after dpkg --purge"
done
echo "deb-check: $deb installs, runs the demo (8 alerts) and purges cleanly" >&2
