package main

import (
	"math/rand/v2"
	"net/netip"
)

// host is a machine as the sensor sees it: its hop count shows in the TTL
// and its IPv4 identification counts up per packet sent.
type host struct {
	addr netip.Addr
	ttl  uint8
	id   uint16
}

// newHost gives addr a plausible TTL (an initial 64, 128 or 255 less a few
// hops) and a random starting IP ID.
func newHost(rng *rand.Rand, addr netip.Addr) *host {
	initial := [...]uint8{64, 64, 128, 255}[rng.IntN(4)]
	return &host{addr: addr, ttl: initial - uint8(3+rng.IntN(14)), id: uint16(rng.Uint32())}
}

// nextID returns the IPv4 identification of the host's next packet.
func (h *host) nextID() uint32 {
	h.id++
	return uint32(h.id)
}

// hosts returns a host for each address.
func hosts(rng *rand.Rand, addrs []netip.Addr) []*host {
	h := make([]*host, len(addrs))
	for i, a := range addrs {
		h[i] = newHost(rng, a)
	}
	return h
}

// pickHosts returns n distinct random hosts (.1 to .254) of the IPv4 /24
// whose first three bytes are given.
func pickHosts(rng *rand.Rand, a, b, c byte, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i, h := range rng.Perm(254)[:n] {
		out[i] = v4(a, b, c, byte(h+1))
	}
	return out
}

// ephemeral returns a client port from Linux's default ephemeral range.
func ephemeral(rng *rand.Rand) uint16 {
	return uint16(32768 + rng.IntN(61000-32768))
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func v4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

// v6 returns the address of prefix (a /64 or shorter, as text) with iid in
// its low 64 bits.
func v6(prefix string, iid uint64) netip.Addr {
	b := netip.MustParseAddr(prefix).As16()
	for i := range 8 {
		b[15-i] |= byte(iid >> (8 * i))
	}
	return netip.AddrFrom16(b)
}
