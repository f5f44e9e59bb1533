#!/bin/sh
# Builds the image and runs it the ways the README shows: reading the demo
# capture with every capability dropped, as a non-root user, and capturing
# on a veth pair with exactly NET_RAW added. Needs
# root, a container engine (docker, or Debian's podman) and the base
# images' registry; exits 2, saying why, where there is none.
#
#   sh scripts/image.sh                  # ENGINE=podman to choose
#   BUILD_ARGS="--build-arg GOPROXY=https://proxy.example.org" sh scripts/image.sh
set -eu
cd "$(dirname "$0")/.."
engine=${ENGINE:-}
if [ -z "$engine" ]; then
	for e in docker podman; do
		if command -v "$e" >/dev/null && "$e" info >/dev/null 2>&1; then
			engine=$e
			break
		fi
	done
fi
[ -n "$engine" ] || { echo "image: no container engine that runs here (docker or podman)" >&2; exit 2; }
tag=echowatch:test
# shellcheck disable=SC2086 # BUILD_ARGS is a list of arguments
"$engine" build $BUILD_ARGS -t "$tag" . || { echo "image: the build failed (is the base images' registry reachable?)" >&2; exit 1; }

fail() { echo "image: $*" >&2; exit 1; }

# Offline: no capability at all, the image's own unprivileged user.
out=$("$engine" run --rm --cap-drop ALL --security-opt no-new-privileges -v "$PWD/pcaps:/pcaps:ro" "$tag" \
	-r /pcaps/demo.pcap --format eve) || fail "-r with --cap-drop ALL failed"
[ "$(printf '%s\n' "$out" | grep -c '"event_type":"alert"')" -eq 8 ] || fail "-r gave other alerts than the demo's 8"
[ "$("$engine" run --rm --entrypoint id "$tag" -u)" != 0 ] || fail "the image runs as root"

# Live: exactly NET_RAW, on the host's network, on a veth pair of our own.
name=ewimg$$
ip link add ewimg0 type veth peer name ewimg1
trap 'ip link del ewimg0 2>/dev/null; "$engine" rm -f "$name" >/dev/null 2>&1' EXIT
ip link set ewimg0 up
ip link set ewimg1 up
"$engine" run -d --name "$name" --cap-drop ALL --cap-add NET_RAW --network host "$tag" \
	-i ewimg1 --format text >/dev/null || fail "-i with NET_RAW alone did not start"
sleep 2
"$engine" logs "$name" 2>&1 | grep -q 'capture started' || { "$engine" logs "$name" >&2; fail "no capture with NET_RAW alone"; }
echo "image: $tag reads captures with no capability and captures with NET_RAW alone, as a non-root user"
