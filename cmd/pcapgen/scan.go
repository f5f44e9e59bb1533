package main

import (
	"bytes"
	"net/netip"
	"slices"
	"time"
)

// nmapUDP adds an nmap -sU -Pn -p7 sweep from scanner over targets, in
// nmap's random host order, from from: one source port for the whole scan,
// random IP IDs, a probe every 15-35 ms. The echoers return the probe; every
// third of the rest answers ICMP port unreachable; probes left unanswered are
// sent once more a second later, as nmap does.
func nmapUDP(t *trace, scanner netip.Addr, targets, echoers []netip.Addr, probe []byte, from time.Duration) {
	sport := uint16(40000 + t.rng.IntN(25000))
	ttl := uint8(37 + t.rng.IntN(23) - 9) // nmap's random initial TTL, nine hops away
	now := from
	var silent []netip.Addr
	send := func(dst netip.Addr) pkt {
		p := pkt{src: ap(scanner, sport), dst: ap(dst, 7), ttl: ttl, id: t.id(), srcMAC: routerMAC, payload: probe}
		t.udp(now, p)
		return p
	}
	for i, k := range t.rng.Perm(len(targets)) {
		dst := targets[k]
		p := send(dst)
		rtt := time.Duration(300+t.rng.IntN(900)) * time.Microsecond
		switch {
		case slices.Contains(echoers, dst):
			t.udp(now+rtt, pkt{src: p.dst, dst: p.src, id: t.id(), dstMAC: routerMAC, payload: probe})
		case i%3 == 0:
			quoted := bytes.Clone(t.b.udp(p)[14:])
			t.add(now+rtt, t.b.icmpUnreachable(pkt{src: p.dst, dst: p.src, dstMAC: routerMAC}, quoted))
		default:
			silent = append(silent, dst)
		}
		now += time.Duration(15+t.rng.IntN(20)) * time.Millisecond
	}
	now += time.Second
	for _, dst := range silent {
		send(dst)
		now += time.Duration(15+t.rng.IntN(20)) * time.Millisecond
	}
}

// hostRange returns 198.51.100.first to .last.
func hostRange(first, last byte) []netip.Addr {
	var a []netip.Addr
	for h := first; h <= last; h++ {
		a = append(a, v4(198, 51, 100, h))
	}
	return a
}

func nmapUDPSweep(t *trace) {
	nmapUDP(t, v4(203, 0, 113, 200), hostRange(1, 40),
		[]netip.Addr{v4(198, 51, 100, 7), v4(198, 51, 100, 23)}, nmapEchoPayload, 5*time.Second)
	nmapUDP(t, v4(192, 0, 2, 66), hostRange(101, 140),
		[]netip.Addr{v4(198, 51, 100, 107), v4(198, 51, 100, 123)}, nmapEchoPayload794, 40*time.Second)
	lookups(t, localClient, localResolver, 0, 0, 60*time.Second)
}

func tcpSYNSweep(t *trace) {
	scanner := v4(203, 0, 113, 201)
	open := []netip.AddrPort{ap(v4(198, 51, 100, 7), 7), ap(v4(198, 51, 100, 19), 19), ap(v4(198, 51, 100, 33), 7)}
	targets := hostRange(1, 36)
	var probes []netip.AddrPort
	for _, h := range targets {
		probes = append(probes, ap(h, 7), ap(h, 19))
	}
	sport := uint16(40000 + t.rng.IntN(25000))
	now := 5 * time.Second
	var silent []pkt
	for _, k := range t.rng.Perm(len(probes)) {
		dst := probes[k]
		seq := t.rng.Uint32()
		p := pkt{src: ap(scanner, sport), dst: dst, ttl: 44, id: t.id(), srcMAC: routerMAC}
		t.tcp(now, p, syn, seq, 0, 1024)
		rtt := time.Duration(300+t.rng.IntN(900)) * time.Microsecond
		back := pkt{src: dst, dst: p.src, id: t.id(), dstMAC: routerMAC}
		switch {
		case slices.Contains(open, dst):
			t.tcp(now+rtt, back, syn|ack, t.rng.Uint32(), seq+1, 64240)
			// The scanner's kernel never opened this connection: it resets.
			p.id = t.id()
			t.tcp(now+rtt+80*time.Microsecond, p, rst, seq+1, 0, 0)
		case dst.Addr().As4()[3]%2 == 0:
			t.tcp(now+rtt, back, rst|ack, 0, seq+1, 0)
		default:
			silent = append(silent, p)
		}
		now += time.Duration(10+t.rng.IntN(20)) * time.Millisecond
	}
	now += time.Second
	for _, p := range silent {
		p.id = t.id()
		t.tcp(now, p, syn, t.rng.Uint32(), 0, 1024)
		now += time.Duration(10+t.rng.IntN(20)) * time.Millisecond
	}
	lookups(t, localClient, localResolver, 0, 0, 60*time.Second)
}
