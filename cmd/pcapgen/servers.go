package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// The server cases are read with every TCP and UDP port watched by the
// spoofed-flood detector, as the README offers: busy servers whose many
// clients each send one or two packets a window, as a random-source flood
// does, but come back window after window; and a SYN flood whose sources
// never come back.

// everyPort is the config.yaml line that watches every port.
const everyPort = "spoofed_flood: {ports: []}\n"

// The server cases' clients are at random routable addresses, as on the
// Internet, where the forged sources of a flood are too.
const (
	dnsResolvers   = 2000
	syslogDevices  = 12000
	ntpClients     = 1500
	synFloodPPS    = 1600
	synFloodFrom   = 2 * time.Second
	synFloodTo     = 8 * time.Second
	minecraftPort  = 25565
	serverBackdrop = "Every port is watched (`spoofed_flood.ports: []`)."
)

func serverScenarios() []scenario {
	return []scenario{
		{
			name:     "busy-dns-authoritative",
			snaplen:  54,
			settings: everyPort,
			about: fmt.Sprintf(`An authoritative DNS server, 198.51.100.54, answering %d resolvers at random
routable addresses for 10 s: each resolver asks every 2.5 to 4 s (its own
period, from port 53 or a port of its own), so within a 5 s window every one
of them sends one query or two, like the sources of a random-source flood;
but they come back window after window. %s Frames are cut at 54
bytes (the DNS header). Expect no alert.`, dnsResolvers, serverBackdrop),
			build: busyDNSAuthoritative,
		},
		{
			name:     "busy-syslog-collector",
			snaplen:  42,
			settings: everyPort,
			about: fmt.Sprintf(`A hosted syslog collector, 198.51.100.114, receiving UDP 514 from %d devices
at random routable addresses for 9 s: each device sends one message every
3.5 to 4 s, so every 5 s window has about %d sources of one message or two
each, nothing but new sources to a sensor that has just started, and the same
devices again in the next window. %s Frames are cut at 42 bytes (the
headers). Expect no alert.`, syslogDevices, syslogDevices, serverBackdrop),
			build: busySyslogCollector,
		},
		{
			name:     "busy-ntp-server",
			snaplen:  42,
			settings: everyPort,
			about: fmt.Sprintf(`A public NTP server, 198.51.100.123, answering %d clients at random routable
addresses for 12 s, each polling every 4 s (mode 3, answered in mode 4): one
or two requests from each client in every 5 s window. %s Frames are cut at 42
bytes. Expect no alert.`, ntpClients, serverBackdrop),
			build: busyNTPServer,
		},
		{
			name:     "syn-flood-random-sources",
			settings: everyPort,
			about: fmt.Sprintf(`A SYN flood to a game server, 198.51.100.65 TCP %d, from %s to %s at %d
packets/s, each SYN from a source address no other packet uses (random
routable addresses and ports, one TTL, window 0), as in the public StopDDoS
capture pkt.TCP.synflood.spoofed.pcap; the server was quiet before, and its
answers are not in the capture. DNS lookups go on until %s. %s Expect one
spoofed_flood incident for 198.51.100.65 at about %d packets/s with
random_source evidence: start, update, end.`, minecraftPort, seconds(synFloodFrom), seconds(synFloodTo),
				synFloodPPS, seconds(tailTo), serverBackdrop, synFloodPPS),
			build: synFloodRandomSources,
		},
	}
}

// routableAddrs returns n distinct random IPv4 addresses outside every
// special-purpose block.
func routableAddrs(rng *rand.Rand, n int) []netip.Addr {
	special := newIPv4Set(specialIPv4)
	seen := make(map[uint32]bool, n) // only to keep them distinct
	addrs := make([]netip.Addr, 0, n)
	for len(addrs) < n {
		a := rng.Uint32()
		if !special.contains(a) && !seen[a] {
			seen[a] = true
			addrs = append(addrs, netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, a))))
		}
	}
	return addrs
}

// periodic returns the times, before until, of a client that sends every
// period from a random phase, each time up to 1% of the period early or
// late.
func periodic(rng *rand.Rand, period, until time.Duration) []time.Duration {
	var ts []time.Duration
	for at := period/100 + time.Duration(rng.Int64N(int64(period))); at < until; at += period {
		ts = append(ts, at+time.Duration(rng.Int64N(int64(period/50)))-period/100)
	}
	return ts
}

// between returns a random duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

func busyDNSAuthoritative(t *trace) {
	server := ap(v4(198, 51, 100, 54), 53)
	for _, r := range routableAddrs(t.rng, dnsResolvers) {
		resolver := newHost(t.rng, r)
		port := uint16(53)
		if t.rng.IntN(2) == 0 {
			port = ephemeral(t.rng)
		}
		for _, at := range periodic(t.rng, between(t.rng, 2500*time.Millisecond, 4*time.Second), 10*time.Second) {
			id := uint16(t.rng.Uint32())
			name := dnsNames[t.rng.IntN(len(dnsNames))]
			q := pkt{src: ap(r, port), dst: server, ttl: resolver.ttl, id: resolver.nextID(), srcMAC: routerMAC, payload: dnsQuery(id, name)}
			t.udp(at, q)
			answer := dnsAnswer(id, name, true, v4(203, 0, 113, byte(1+t.rng.IntN(254))))
			t.udp(at+time.Duration(100+t.rng.IntN(400))*time.Microsecond, pkt{src: server, dst: q.src, id: t.id(), dstMAC: routerMAC, payload: answer})
		}
	}
}

func busySyslogCollector(t *trace) {
	collector := ap(v4(198, 51, 100, 114), 514)
	for i, a := range routableAddrs(t.rng, syslogDevices) {
		dev := newHost(t.rng, a)
		port := ephemeral(t.rng)
		for _, at := range periodic(t.rng, between(t.rng, 3500*time.Millisecond, 4*time.Second), 9*time.Second) {
			msg := fmt.Appendf(nil, "<134>%s dev-%05d app[%d]: link up", epoch.Add(at).Format(time.Stamp), i, 100+i%900)
			t.udp(at, pkt{src: ap(a, port), dst: collector, ttl: dev.ttl, id: dev.nextID(), srcMAC: routerMAC, payload: msg})
		}
	}
}

func busyNTPServer(t *trace) {
	server := ap(v4(198, 51, 100, 123), 123)
	for _, a := range routableAddrs(t.rng, ntpClients) {
		client := ap(a, ephemeral(t.rng))
		for _, at := range periodic(t.rng, 4*time.Second, 12*time.Second) {
			ntpExchange(t, at, client, server, 3, 4, 2)
		}
	}
}

func synFloodRandomSources(t *trace) {
	target := ap(v4(198, 51, 100, 65), minecraftPort)
	n := int(synFloodPPS * (synFloodTo - synFloodFrom) / time.Second)
	srcs := routableAddrs(t.rng, n)
	for i, at := range spread(t.rng, synFloodFrom, synFloodTo, n) {
		p := pkt{src: ap(srcs[i], uint16(1024+t.rng.IntN(64512))), dst: target, ttl: 57, id: t.id(), srcMAC: routerMAC}
		t.tcp(at, p, syn, t.rng.Uint32(), 0, 0)
	}
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}
