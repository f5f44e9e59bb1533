package main

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ntpExchange adds a request from a to b and b's answer 0.2-1 ms later,
// NTP modes reqMode and respMode.
func ntpExchange(t *trace, at time.Duration, a, b netip.AddrPort, reqMode, respMode, stratum uint8) {
	t.udp(at, pkt{src: a, dst: b, id: t.id(), payload: ntpPacket(reqMode, stratum+1, at, 0)})
	back := at + time.Duration(200+t.rng.IntN(800))*time.Microsecond
	t.udp(back, pkt{src: b, dst: a, id: t.id(), payload: ntpPacket(respMode, stratum, back, at)})
}

func benignNTPPeers(t *trace) {
	const seconds = 20
	server := ap(v4(198, 51, 100, 123), 123)
	peers := append(pickHosts(t.rng, 203, 0, 113, 30), pickHosts(t.rng, 192, 0, 2, 30)...)
	// Every peer polls once a second (symmetric active, answered symmetric
	// passive), each at its own phase.
	for _, p := range peers {
		phase := time.Duration(t.rng.IntN(1000)) * time.Millisecond
		for s := range seconds {
			ntpExchange(t, time.Duration(s)*time.Second+phase, ap(p, 123), server, 1, 2, 1)
		}
	}
	// A local peer in burst mode: five exchanges a second.
	local := ap(v4(198, 51, 100, 124), 123)
	for _, at := range spread(t.rng, 0, seconds*time.Second, 5*seconds) {
		ntpExchange(t, at, local, server, 1, 2, 1)
	}
	// Clients from ephemeral ports.
	for _, at := range spread(t.rng, 0, seconds*time.Second, 10*seconds) {
		client := ap(v4(198, 51, 100, byte(150+t.rng.IntN(50))), ephemeral(t.rng))
		ntpExchange(t, at, client, server, 3, 4, 1)
	}
}

func benignDNS(t *trace) {
	const seconds = 15
	resolver := v4(198, 51, 100, 53)
	auth := []netip.Addr{v4(192, 0, 2, 1), v4(203, 0, 113, 53), v4(198, 18, 0, 53)}
	// The resolver queries from port 53, as BIND's query-source port 53 did.
	for _, a := range auth {
		for _, at := range spread(t.rng, 0, seconds*time.Second, 20*seconds) {
			id := uint16(t.rng.Uint32())
			name := dnsNames[t.rng.IntN(len(dnsNames))]
			t.udp(at, pkt{src: ap(resolver, 53), dst: ap(a, 53), id: t.id(), payload: dnsQuery(id, name)})
			back := at + time.Duration(2000+t.rng.IntN(30000))*time.Microsecond
			answer := dnsAnswer(id, name, true, v4(203, 0, 113, byte(1+t.rng.IntN(254))))
			t.udp(back, pkt{src: ap(a, 53), dst: ap(resolver, 53), ttl: 55, id: t.id(), payload: answer})
		}
	}
	for _, at := range spread(t.rng, 0, seconds*time.Second, 20*seconds) {
		client := v4(198, 51, 100, byte(101+t.rng.IntN(20)))
		lookup(t, at, client, resolver, 0)
	}
}

func benignEchoMonitor(t *trace) {
	monitor, server := v4(192, 0, 2, 10), ap(v4(198, 51, 100, 7), 7)
	phase := time.Duration(t.rng.IntN(1000)) * time.Millisecond
	for seq := range 90 {
		at := time.Duration(seq)*time.Second + phase
		probe := pkt{
			src: ap(monitor, ephemeral(t.rng)), dst: server, ttl: 58, id: t.id(), srcMAC: routerMAC,
			payload: fmt.Appendf(nil, "monitor probe seq=%06d\n", seq),
		}
		t.udp(at, probe)
		back := at + time.Duration(150+t.rng.IntN(450))*time.Microsecond
		t.udp(back, pkt{src: server, dst: probe.src, id: t.id(), dstMAC: routerMAC, payload: probe.payload})
	}
}

func benignWoL(t *trace) {
	sender := v4(198, 51, 100, 250)
	macs := make([]net.HardwareAddr, 50)
	for i := range macs {
		macs[i] = macFor(v4(198, 51, 100, byte(i+1)))
	}
	// A management tool waking a whole floor, again and again.
	for i, at := range spread(t.rng, attackFrom, attackFrom+10*time.Second, 1500) {
		dst := v4(198, 51, 100, 255)
		if i%5 == 0 {
			dst = v4(255, 255, 255, 255)
		}
		var password []byte
		switch {
		case i%7 == 0:
			password = randomBytes(t.rng, 4)
		case i%11 == 0:
			password = randomBytes(t.rng, 6)
		}
		t.udp(at, pkt{src: ap(sender, ephemeral(t.rng)), dst: ap(dst, 7), id: t.id(), dstMAC: broadcastMAC, payload: wakeOnLAN(macs[i%len(macs)], password)})
	}
	// Then unicast to 25 hosts, which a scan detector must not count.
	for i, at := range spread(t.rng, 15*time.Second, 18*time.Second, 25) {
		dst := v4(198, 51, 100, byte(i+1))
		t.udp(at, pkt{src: ap(sender, ephemeral(t.rng)), dst: ap(dst, 7), id: t.id(), payload: wakeOnLAN(macFor(dst), nil)})
	}
}
