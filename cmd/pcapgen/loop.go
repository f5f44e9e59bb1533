package main

import (
	"net/netip"
	"time"
)

// echoChargenLoop adds an echo-chargen loop: at from, one spoofed datagram
// "from" chargen:19 reaches echo:7 through the router; from then on the echo
// server returns every datagram to the chargen server, which answers each
// with 0-512 characters, pps times a second each way, until to.
func echoChargenLoop(t *trace, echo, chargenSrv netip.Addr, vlan uint16, pps int, from, to time.Duration) {
	e := ap(echo, 7)
	c := ap(chargenSrv, 19)
	eID, cID := uint16(t.rng.Uint32()), uint16(t.rng.Uint32())
	data := []byte("\n")
	t.udp(from, pkt{src: c, dst: e, ttl: 52, id: t.id(), vlan: vlan, srcMAC: routerMAC, payload: data})
	period := time.Second / time.Duration(pps)
	line := 0
	for now := from; now+period < to; now += period {
		eID++
		t.udp(now+time.Duration(40+t.rng.IntN(80))*time.Microsecond,
			pkt{src: e, dst: c, id: uint32(eID), vlan: vlan, payload: data})
		data = chargen(line, t.rng.IntN(513))
		line++
		cID++
		t.udp(now+period/2+time.Duration(t.rng.IntN(200))*time.Microsecond,
			pkt{src: c, dst: e, id: uint32(cID), vlan: vlan, payload: data})
	}
}

func loopEchoChargenVLAN(t *trace) {
	const vlan = 100
	echoChargenLoop(t, v4(198, 51, 100, 7), v4(198, 51, 100, 19), vlan, 20, attackFrom, attackTo)
	lookups(t, localClient, localResolver, vlan, 0, tailTo)
}

func loopTap(t *trace) {
	echoChargenLoop(t, v4(198, 51, 100, 7), v4(198, 51, 100, 19), 0, 200, attackFrom, attackTo)
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

func loopEchoEchoIPv6(t *trace) {
	echoEchoLoop(t, ap(v6("2001:db8:100::", 7), 7), ap(v6("2001:db8:200::", 7), 7), attackFrom, attackTo)
	lookups(t, v6("2001:db8:100::", 0x100), v6("2001:db8:100::", 0x53), 0, 0, tailTo)
}

// echoEchoLoop adds an echo-echo loop: at from, a spoofed datagram "from"
// b reaches a, and the two echo servers return the same 40 bytes to each
// other, 20 packets/s each way, until to. The sensor sits at a's site: a's
// packets leave with hop limit 64, b's arrive 11 hops later, the
// attacker's trigger from further away.
func echoEchoLoop(t *trace, a, b netip.AddrPort, from, to time.Duration) {
	payload := randomBytes(t.rng, 40)
	t.udp(from, pkt{src: b, dst: a, ttl: 47, srcMAC: routerMAC, payload: payload})
	const oneWay = 25 * time.Millisecond // 20 packets/s each way
	for now := from; now+2*oneWay < to; now += 2 * oneWay {
		t.udp(now+time.Duration(30+t.rng.IntN(60))*time.Microsecond, pkt{src: a, dst: b, dstMAC: routerMAC, payload: payload})
		t.udp(now+oneWay+time.Duration(t.rng.IntN(400))*time.Microsecond, pkt{src: b, dst: a, ttl: 53, srcMAC: routerMAC, payload: payload})
	}
}
