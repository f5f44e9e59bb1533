package main

import (
	"net/netip"
	"time"
)

// demo returns the capture the README's quick start runs: a little of
// everything in 20 seconds.
func demo() scenario {
	return scenario{
		name: "demo",
		about: `A 20-second mix for the README's quick start: an echo reflection toward
198.51.100.10 (30 reflectors, 150 packets/s from 1 s to 16 s), an echo-chargen
loop between 198.51.100.7:7 and 198.51.100.19:19 from 4 s, an nmap 7.94 UDP
sweep of port 7 over 198.51.100.1-.30 from 203.0.113.200 at 8 s (198.51.100.7
echoes the probe back), and ordinary DNS and NTP throughout.`,
		build: func(t *trace) {
			const end = 20 * time.Second
			echoReflection(t, reflectors(t, 30, false), v4(198, 51, 100, 10), 2250, 1*time.Second, 16*time.Second)
			echoChargenLoop(t, v4(198, 51, 100, 7), v4(198, 51, 100, 19), 0, 20, 4*time.Second, end-500*time.Millisecond)
			nmapUDP(t, v4(203, 0, 113, 200), hostRange(1, 30), []netip.Addr{v4(198, 51, 100, 7)}, nmapEchoPayload794, 8*time.Second)
			lookups(t, localClient, localResolver, 0, 0, end)
			ntpServer := ap(v4(192, 0, 2, 123), 123)
			for at := 500 * time.Millisecond; at < end; at += 4 * time.Second {
				ntpExchange(t, at, ap(localClient, ephemeral(t.rng)), ntpServer, 3, 4, 2)
			}
		},
	}
}
