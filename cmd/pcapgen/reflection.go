package main

import (
	"net/netip"
	"time"
)

// Addresses the reflection cases share: a local resolver and a client whose
// lookups are the background traffic.
var (
	localResolver = v4(198, 51, 100, 53)
	localClient   = v4(198, 51, 100, 100)
)

// reflectors returns n hosts in random order from the documentation
// ranges 203.0.113.0/24 and 192.0.2.0/24, a fifth of them from the
// benchmark range 198.18.0.0/15 when withBenchmark is set.
func reflectors(t *trace, n int, withBenchmark bool) []*host {
	var addrs []netip.Addr
	k := n
	if withBenchmark {
		k = n * 4 / 5
		for range n - k {
			addrs = append(addrs, v4(198, 18+byte(t.rng.IntN(2)), byte(t.rng.IntN(256)), byte(1+t.rng.IntN(254))))
		}
	}
	addrs = append(pickHosts(t.rng, 203, 0, 113, (k+1)/2), append(pickHosts(t.rng, 192, 0, 2, k/2), addrs...)...)
	t.rng.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	return hosts(t.rng, addrs)
}

// echoReflection adds replies from port 7 of refl toward victim's random
// ports, total of them spread over [from, to), every reflector returning
// the attacker's payload and each sending a different number of packets.
func echoReflection(t *trace, refl []*host, victim netip.Addr, total int, from, to time.Duration) {
	payload := randomBytes(t.rng, 32)
	for _, s := range schedule(t.rng, descending(total, len(refl)), from, to) {
		r := refl[s.who]
		t.udp(s.at, pkt{src: ap(r.addr, 7), dst: ap(victim, ephemeral(t.rng)), ttl: r.ttl, id: r.nextID(), payload: payload})
	}
}

func reflectionIn(t *trace) {
	echoReflection(t, reflectors(t, 40, false), v4(198, 51, 100, 10), 205*attackSeconds, attackFrom, attackTo)
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

func reflectionOut(t *trace) {
	victim := v4(203, 0, 113, 99)
	services := []struct {
		host byte
		port uint16
	}{{7, 7}, {17, 7}, {27, 7}, {37, 7}, {47, 7}, {57, 7}, {19, 19}, {29, 19}}
	servers := make([]*host, len(services))
	for i, s := range services {
		servers[i] = &host{addr: v4(198, 51, 100, s.host), ttl: 64, id: uint16(t.rng.Uint32())}
	}
	counts := append(descending(72*attackSeconds, 6), descending(12*attackSeconds, 2)...)
	request := randomBytes(t.rng, 32)
	line := 0
	for _, s := range schedule(t.rng, counts, attackFrom, attackTo) {
		srv, port := servers[s.who], services[s.who].port
		// The spoofed request arrives from outside, through the router.
		req := pkt{
			src: ap(victim, ephemeral(t.rng)), dst: ap(srv.addr, port),
			ttl: 49, id: t.id(), srcMAC: routerMAC, payload: request,
		}
		reply := pkt{src: req.dst, dst: req.src, ttl: srv.ttl, id: srv.nextID(), dstMAC: routerMAC, payload: request}
		if port == 19 {
			req.payload = []byte{'\n'}
			reply.payload = chargen(line, 200+t.rng.IntN(313))
			line++
		}
		t.udp(s.at, req)
		t.udp(s.at+time.Duration(60+t.rng.IntN(300))*time.Microsecond, reply)
	}
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

func chargenReflection(t *trace) {
	victim := v4(198, 51, 100, 20)
	refl := reflectors(t, 25, true)
	lines := make([]int, len(refl))
	for _, s := range schedule(t.rng, descending(150*attackSeconds, len(refl)), attackFrom, attackTo) {
		r := refl[s.who]
		lines[s.who]++
		t.udp(s.at, pkt{
			src: ap(r.addr, 19), dst: ap(victim, ephemeral(t.rng)), ttl: r.ttl, id: r.nextID(),
			payload: chargen(lines[s.who], 960+t.rng.IntN(141)),
		})
	}
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

func carpetBombing(t *trace) {
	const perHost = 15 // 0.75 packets/s each, 190 for the /24
	refl := reflectors(t, 30, false)
	victims := make([]int, 254)
	for i := range victims {
		victims[i] = perHost
	}
	hostDeck := deck(t.rng, victims)
	payload := randomBytes(t.rng, 32)
	for i, s := range schedule(t.rng, descending(len(hostDeck), len(refl)), attackFrom, attackTo) {
		r := refl[s.who]
		victim := v4(198, 51, 100, byte(hostDeck[i]+1))
		t.udp(s.at, pkt{src: ap(r.addr, 7), dst: ap(victim, ephemeral(t.rng)), ttl: r.ttl, id: r.nextID(), payload: payload})
	}
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

func fragmentedReflection(t *trace) {
	victim := v4(198, 51, 100, 30)
	refl := reflectors(t, 12, false)
	payload := randomBytes(t.rng, 4000)
	for _, s := range schedule(t.rng, descending(35*attackSeconds, len(refl)), attackFrom, attackTo) {
		r := refl[s.who]
		t.fragments(s.at, pkt{src: ap(r.addr, 7), dst: ap(victim, ephemeral(t.rng)), ttl: r.ttl, id: r.nextID(), payload: payload}, 1500)
	}
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

func benignSlowReflection(t *trace) {
	echoReflection(t, reflectors(t, 10, false), v4(198, 51, 100, 40), 450, attackFrom, attackFrom+90*time.Second)
}
