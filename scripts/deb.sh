#!/bin/sh
# Builds a Debian package of echowatch with Debian's own tools (dpkg-deb):
# the binary, a systemd unit (DynamicUser, CAP_NET_RAW alone), the example
# configuration as /etc/echowatch/echowatch.yaml (writing to
# /var/log/echowatch/eve.json), /etc/default/echowatch for the interface, a
# man page made from --help, and the licence. Prints the package's path.
#
#   sh scripts/deb.sh                     # VERSION=1.2.3 to name the version
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh gcc libc6-dev libpcap-dev >&2
version=${VERSION:-0.0.0+git$(git log -1 --format=%cd.%h --date=format:%Y%m%d 2>/dev/null || echo unknown)}
arch=$(dpkg --print-architecture)
out=bin/deb
root=$out/root
rm -rf "$out"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/echowatch" "$root/etc/default" \
	"$root/usr/share/man/man8" "$root/usr/share/doc/echowatch"
go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$root/usr/bin/echowatch" ./cmd/echowatch
install -m 644 scripts/deb/echowatch.service "$root/lib/systemd/system/echowatch.service"
install -m 644 scripts/deb/default "$root/etc/default/echowatch"
# The example configuration, with every default, writing to the log
# directory the unit makes.
sed -e 's|^outputs: \[stdout\]|outputs: [file:///var/log/echowatch/eve.json]|' \
	-e 's|^# Use it with: .*|# The echowatch service reads it (its interface: /etc/default/echowatch).|' \
	echowatch.example.yaml >"$root/etc/echowatch/echowatch.yaml"
grep -q '^outputs: \[file:///var/log/echowatch/eve.json\]' "$root/etc/echowatch/echowatch.yaml" ||
	{ echo "deb: the example configuration has no 'outputs: [stdout]' line to point at the log" >&2; exit 1; }
for f in postinst prerm postrm; do
	install -m 755 "scripts/deb/$f" "$root/DEBIAN/$f"
done
printf '%s\n' /etc/echowatch/echowatch.yaml /etc/default/echowatch >"$root/DEBIAN/conffiles"
# The man page: the --help text, which is the reference.
{
	printf '.TH ECHOWATCH 8 "%s" "echowatch %s"\n' "$(date -u +%Y-%m-%d)" "$version"
	printf '.SH NAME\nechowatch \\- detect abuse of echo, chargen and the other small services\n'
	printf '.SH SYNOPSIS\n.nf\n'
	"$root/usr/bin/echowatch" --help | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\\&'/"
	printf '.fi\n.SH FILES\n/etc/echowatch/echowatch.yaml, /etc/default/echowatch, /var/log/echowatch/eve.json\n'
	printf '.SH SEE ALSO\n/usr/share/doc/echowatch/README.md\n'
} | gzip -9n >"$root/usr/share/man/man8/echowatch.8.gz"
gzip -9nc README.md >"$root/usr/share/doc/echowatch/README.md.gz"
cat >"$root/usr/share/doc/echowatch/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: echowatch

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
size=$(du -sk "$root" | cut -f1)
# The libpcap package the binary links against, as dpkg-shlibdeps would
# name it (libpcap0.8 on bookworm, libpcap0.8t64 from trixie on).
lib=$(ldd "$root/usr/bin/echowatch" | awk '/libpcap/ { print $3 }')
pcap=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -n 1 | cut -d: -f1)
[ -n "$pcap" ] || { echo "deb: no Debian package owns $lib, which echowatch links" >&2; exit 1; }
cat >"$root/DEBIAN/control" <<CONTROL
Package: echowatch
Version: $version
Architecture: $arch
Maintainer: echowatch developers <echowatch@localhost>
Installed-Size: $size
Depends: $pcap (>= 1.10), libc6
Section: net
Priority: optional
Description: passive sensor for abuse of echo, chargen and the small services
 echowatch reads a live interface (a span port) or capture files and
 detects UDP reflection through echo, chargen and their siblings, service
 loops (CVE-2024-2169), spoofed-source floods, scans for these services and
 hosts that still run them. Alerts are Suricata-compatible EVE JSON, to a
 file, syslog or Kafka.
CONTROL
deb="$out/echowatch_${version}_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
