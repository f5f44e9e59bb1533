#!/bin/sh
# Runs the whole test suite. Installs what the tests need first (Debian).
# Live-capture tests run in network namespaces and need root; as another
# user they skip with a message.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh gcc libc6-dev libpcap-dev iproute2 libcap2-bin rsyslog rsyslog-gnutls chromium \
	nmap hping3 xinetd tcpdump
go vet ./...
go test -count=1 ./...
