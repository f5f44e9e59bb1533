package main

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"
)

// specialIPv4 is every IPv4 block of the IANA special-purpose registry
// (RFC 6890 and its updates) plus multicast and the reserved class E: what a
// random "routable-looking" source must avoid, so that a random-source flood
// carries no bogon evidence at all.
var specialIPv4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.31.196.0/24"),
	netip.MustParsePrefix("192.52.193.0/24"),
	netip.MustParsePrefix("192.88.99.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("192.175.48.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// ipv4Set is a set of IPv4 prefixes as numbers, for a membership test
// fast enough to run on every packet.
type ipv4Set []struct{ base, mask uint32 }

func newIPv4Set(prefixes []netip.Prefix) ipv4Set {
	s := make(ipv4Set, len(prefixes))
	for i, p := range prefixes {
		s[i].mask = ^uint32(0) << (32 - p.Bits())
		s[i].base = binary.BigEndian.Uint32(p.Addr().AsSlice())
	}
	return s
}

func (s ipv4Set) contains(a uint32) bool {
	for _, p := range s {
		if a&p.mask == p.base {
			return true
		}
	}
	return false
}

// randomIn returns a random address inside p.
func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= byte(rng.IntN(2)) << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func randomSourceFlood(t *trace) {
	const sources = 300 * attackSeconds
	target := ap(v4(198, 51, 100, 77), 7)
	addrs := routableAddrs(t.rng, sources)
	counts := make([]int, sources)
	ports := make([]uint16, sources)
	for i := range counts {
		counts[i] = 1
		if t.rng.IntN(5) == 0 {
			counts[i] = 2
		}
		ports[i] = uint16(1024 + t.rng.IntN(64512))
	}
	payload := []byte("XXXXXXXXXXXXXXXX")
	var serverID uint16
	for i, s := range schedule(t.rng, counts, attackFrom, attackTo) {
		// One attacker sends them all: one TTL, random IP IDs.
		req := pkt{src: ap(addrs[s.who], ports[s.who]), dst: target, ttl: 53, id: t.id(), srcMAC: routerMAC, payload: payload}
		t.udp(s.at, req)
		if i%4 == 0 {
			serverID++
			t.udp(s.at+time.Duration(50+t.rng.IntN(200))*time.Microsecond,
				pkt{src: target, dst: req.src, id: uint32(serverID), dstMAC: routerMAC, payload: payload})
		}
	}
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

// Sources no packet from outside can honestly carry.
var (
	bogonIPv4 = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("224.0.0.0/4"),
		netip.MustParsePrefix("240.0.0.0/4"),
	}
	bogonIPv6 = []netip.Prefix{
		netip.MustParsePrefix("::/128"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("::ffff:0:0/96"),
		netip.MustParsePrefix("100::/64"),
		netip.MustParsePrefix("fc00::/7"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("ff00::/8"),
	}
)

// bogonFloodTo adds n requests to target from random addresses of the bogon
// prefixes, one in ten a land packet (source address = target address, a
// random source port).
func bogonFloodTo(t *trace, target netip.AddrPort, bogons []netip.Prefix, n int) {
	payload := randomBytes(t.rng, 16)
	for i, at := range spread(t.rng, attackFrom, attackTo, n) {
		src := randomIn(t.rng, bogons[t.rng.IntN(len(bogons))])
		if i%10 == 0 {
			src = target.Addr()
		}
		t.udp(at, pkt{
			src: ap(src, uint16(1024+t.rng.IntN(64512))), dst: target,
			ttl: 60, id: t.id(), srcMAC: routerMAC, payload: payload,
		})
	}
}

func bogonFlood(t *trace) {
	bogonFloodTo(t, ap(v4(198, 51, 100, 80), 7), bogonIPv4, 200*attackSeconds)
	bogonFloodTo(t, ap(v6("2001:db8:80::", 0x80), 7), bogonIPv6, 160*attackSeconds)
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}
