#!/bin/sh
# Runs the whole test suite. Installs what the tests need first (Debian).
# Live-capture tests run in network namespaces and need root; as another
# user they skip with a message.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh gcc libc6-dev libpcap-dev iproute2 libcap2-bin rsyslog rsyslog-gnutls chromium \
	nmap hping3 xinetd tcpdump softflowd pmacct tcpreplay
go vet ./...
# The oldest Go that go.mod's go line (and the README) name must build
# echowatch and pass its core tests: the module proxy hands that toolchain
# over when it is not the one installed.
oldest=go$(awk '$1 == "go" { print $2; exit }' go.mod)
if [ "$(go env GOVERSION)" != "$oldest" ]; then
	echo "test: building and testing with $oldest, the oldest Go that go.mod names" >&2
	GOTOOLCHAIN=$oldest go vet ./...
	GOTOOLCHAIN=$oldest go test -count=1 -short ./capture ./detect ./internal/sensor
fi
go test -count=1 ./...
# The Debian package: built, installed with dpkg -i, the demo run through
# the installed binary, purged. It needs root: as another user it says so
# and the rest stands.
rc=0
sh scripts/deb-check.sh || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || exit "$rc"
