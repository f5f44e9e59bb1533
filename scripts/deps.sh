#!/bin/sh
# Installs, on Debian, what echowatch needs to build and test: libpcap's
# headers for live capture, iproute2 for the network-namespace tests,
# libcap2-bin (setcap) to test capture without root as the image does, rsyslog
# and its TLS driver (rsyslog-gnutls) for the syslog tests, chromium to
# render the HTML report in a test, nmap, hping3 and xinetd for the
# test that points real tools at a real inetd, tcpdump to capture the
# kernel's tunnels beside the sensor, softflowd and pmacct as real NetFlow,
# IPFIX and sFlow exporters, and tcpreplay to pace a capture onto an
# interface for them. Does nothing for what is already there.
set -eu
need=""
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need="$need $pkg"
done
[ -z "$need" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing:$need" >&2
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
