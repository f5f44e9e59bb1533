#!/bin/sh
# Runs echowatch on the bundled demo capture and prints its alerts as
# readable lines. Installs libpcap's headers first if they are missing.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh gcc libc6-dev libpcap-dev
go build -o bin/echowatch ./cmd/echowatch
./bin/echowatch -r pcaps/demo.pcap --format text "$@"
