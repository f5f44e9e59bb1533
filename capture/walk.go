package capture

import (
	"encoding/binary"
	"net/netip"
)

// Ethertypes, and the values that encapsulation headers name what they
// carry with.
const (
	etIPv4             = 0x0800
	etIPv6             = 0x86dd
	etTEB              = 0x6558 // transparent Ethernet bridging: an Ethernet frame follows
	etVLAN             = 0x8100
	etQinQ             = 0x88a8
	etQinQOld          = 0x9100
	etMPLS             = 0x8847
	etMPLSMulti        = 0x8848
	etPPPoEDisc        = 0x8863
	etPPPoESess        = 0x8864
	etNSH              = 0x894f
	etERSPAN           = 0x88be // in GRE: ERSPAN type I or II
	etERSPAN3          = 0x22eb // in GRE: ERSPAN type III
	etNone      uint16 = 0      // what an encapsulation carries is not one we decode
)

// inner is what an encapsulation header leads to. The functions that read
// headers fill one through a pointer, field by field: returned by value,
// it was stored in pieces and loaded whole, which stalls the core.
type inner struct {
	off, end int        // where what follows starts and ends in the frame
	id       uint32     // the header's identifier, if hasID
	greKey   uint32     // GRE's key, if hasGREKey: ERSPAN's ID does not replace it for tenants
	et       uint16     // what follows, as an ethertype (etNone: not one we decode)
	vlan     uint16     // ERSPAN: the mirrored frame's VLAN
	kind     TunnelKind // the header's kind

	hasID, hasGREKey bool
}

// start readies nx for a header of kind whose packet ends at end.
func (nx *inner) start(kind TunnelKind, end int, hasID bool) {
	*nx = inner{}
	nx.kind, nx.end, nx.hasID = kind, end, hasID
}

// walk decodes what follows a link-layer or encapsulation header, named
// by et and starting at b[off:], to the innermost packet. from is the
// encapsulation whose header named et, which is charged with an et we do
// not decode (TunnelNone: a link layer named it, and the frame is not IP).
//
// The loop ends: every encapsulation it enters counts toward
// maxTunnelDepth, and an Ethernet frame is only entered from one.
func (d *Decoder) walk(b []byte, off int, et uint16, from TunnelKind, p *Packet) DropReason {
	var nx inner
	for {
		var r DropReason
		switch et {
		case etIPv4, etIPv6:
			// carrier and decodedCarrier charge the headers they read
			// with their failures.
			v6 := et == etIPv6
			kind, poff, pend, sure := d.peek(b, off, v6)
			if kind == TunnelVXLAN && d.depth == 0 && d.vxlanOuter(b[:pend], off, poff, v6, p) {
				// The Ethernet frame inside, as etTEB below reads it.
				b, d.linkOff = b[:pend], poff+8
				var ok bool
				if et, off, ok = ethernet(b, poff+8, p); !ok {
					return DropMalformedLink
				}
				continue
			}
			switch {
			case kind != TunnelNone:
				if r = d.carrier(kind, b, off, poff, pend, v6, p, &nx); nx.kind == TunnelNone && r == DropNone {
					// Not the header its port promised: plain UDP.
					return d.parseIP(b, off, v6, p)
				}
			case sure:
				return d.parseIP(b, off, v6, p)
			default:
				if r = d.parseIP(b, off, v6, p); r == DropNone {
					r = d.decodedCarrier(b, p, &nx)
				}
			}
			if nx.kind == TunnelNone || r != DropNone {
				return r
			}
		case etTEB:
			if from == TunnelNone {
				return DropNonIP
			}
			p.VLANs, p.NumVLANs = [2]uint16{}, 0
			d.linkOff = off
			var ok bool
			if et, off, ok = ethernet(b, off, p); !ok {
				return DropMalformedLink
			}
			if p.NumVLANs == 0 && d.spanVLAN != 0 {
				p.VLANs[0], p.NumVLANs = d.spanVLAN, 1
			}
			d.spanVLAN, from = 0, TunnelNone
			continue
		case etMPLS, etMPLSMulti:
			r = d.mpls(b, off, p, &nx)
		case etPPPoESess:
			r = pppoe(b, off, &nx)
		case etNSH:
			r = nsh(b, off, &nx)
		default:
			if from == TunnelNone || et == etPPPoEDisc {
				return DropNonIP
			}
			d.stats.Tunnels[from].UnknownPayload++
			return DropUnknownTunnelPayload
		}
		if r != DropNone {
			return d.failed(nx.kind, r)
		}
		if r = d.enter(p, &nx); r != DropNone {
			return r
		}
		b, off, et, from = b[:nx.end], nx.off, nx.et, nx.kind
	}
}

// vxlanOuter is what carrier and enter do for the commonest carrier, a
// VXLAN datagram in the frame's own IP packet b[off:] (AWS and Azure
// traffic mirroring, Linux vxlan devices), with its header at b[poff:],
// in a third of their instructions: most mirrored traffic comes this way.
// It reports false, and changes nothing, for a datagram that is not
// VXLAN, which the general way then counts.
func (d *Decoder) vxlanOuter(b []byte, off, poff int, v6 bool, p *Packet) bool {
	vni, ok := vxlanVNI(b[poff:])
	if !ok {
		return false
	}
	d.depth = 1
	d.kinds |= 1 << TunnelVXLAN
	d.stats.Tunnels[TunnelVXLAN].Decoded++ // until the frame is dropped
	t := &p.Tunnel
	t.Depth, t.Kind, t.HasID, t.ID = 1, TunnelVXLAN, true, vni
	t.InnerKind, t.InnerHasID, t.InnerID = TunnelVXLAN, true, vni
	if d.tenant == TenantVNI {
		p.Tenant, d.tenantSet = vni, true
	}
	h := b[off:poff]
	if v6 {
		t.Src, t.Dst = netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40]))
	} else {
		t.Src, t.Dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
	}
	u := b[poff-8 : poff]
	t.Proto, t.SrcPort, t.DstPort = ProtoUDP, binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:])
	p.VLANs, p.NumVLANs = [2]uint16{}, 0 // the frame inside has its own
	return true
}

// failed charges a header of kind that failed with r to its counters.
func (d *Decoder) failed(kind TunnelKind, r DropReason) DropReason {
	switch r {
	case DropMalformedTunnel:
		d.stats.Tunnels[kind].Malformed++
	case DropUnknownTunnelPayload:
		d.stats.Tunnels[kind].UnknownPayload++
	}
	return r
}

// enter records that the packet is inside nx's encapsulation.
func (d *Decoder) enter(p *Packet, nx *inner) DropReason {
	if d.depth == maxTunnelDepth {
		return DropTunnelTooDeep
	}
	d.depth++
	d.linkOff = -1
	if bit := uint16(1) << nx.kind; d.kinds&bit == 0 {
		d.kinds |= bit
		d.stats.Tunnels[nx.kind].Decoded++ // until the frame is dropped
	}
	t := &p.Tunnel
	t.Depth = d.depth
	if d.depth == 1 {
		t.Kind, t.HasID, t.ID = nx.kind, nx.hasID, nx.id
	}
	t.InnerKind, t.InnerHasID, t.InnerID = nx.kind, nx.hasID, nx.id
	if d.tenant != TenantNone && nx.hasID && !d.tenantSet && d.tenant.has(nx.kind) {
		p.Tenant, d.tenantSet = nx.id, true
	}
	if nx.vlan != 0 {
		if nx.et == etTEB {
			d.spanVLAN = nx.vlan
		} else {
			p.VLANs, p.NumVLANs = [2]uint16{nx.vlan}, 1
		}
	}
	return DropNone
}

// carrier reads the header of the encapsulation kind that peek found in
// the IP packet at b[off:], whose payload is b[poff:pend], into nx, and
// records the packet as the tunnel's carrier if it is the outermost. It
// leaves nx.kind TunnelNone and returns DropNone when a UDP payload is
// not the header its port promised.
func (d *Decoder) carrier(kind TunnelKind, b []byte, off, poff, pend int, v6 bool, p *Packet, nx *inner) DropReason {
	h := b[off:]
	proto := h[9]
	if v6 {
		proto = h[6]
	}
	r := d.carried(kind, proto, b[:pend], poff, p, nx)
	if nx.kind == TunnelNone || r != DropNone || p.Tunnel.Src.IsValid() {
		return r
	}
	t := &p.Tunnel
	if v6 {
		t.Src, t.Dst = netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40]))
	} else {
		t.Src, t.Dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
	}
	t.Proto = proto
	if proto == ProtoUDP {
		u := b[poff-8:]
		t.SrcPort, t.DstPort = binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:])
	}
	return DropNone
}

// decodedCarrier looks again at the IP packet p just decoded from b, for
// the encapsulations that peek does not find (behind IPv6 extension
// headers, in first fragments, after a cut). When p carries one, it reads
// its header into nx, records p as the tunnel's carrier if it is the
// outermost, and clears p for the packet inside; otherwise nx.kind is
// TunnelNone and p stays the packet.
func (d *Decoder) decodedCarrier(b []byte, p *Packet, nx *inner) DropReason {
	nx.kind = TunnelNone
	var (
		kind TunnelKind
		pay  []byte
	)
	switch p.Proto {
	case ProtoUDP:
		if !p.HasPorts {
			return DropNone // a later fragment: see Decode
		}
		if kind = d.udpKind(p.DstPort); kind == TunnelNone {
			return DropNone
		}
		pay = d.udp.Payload
	case ipProtoIPv4, ipProtoIPv6, ipProtoGRE:
		if p.FragOffset != 0 {
			return DropTunnelFragment
		}
		kind, pay = TunnelIPIP, d.ipPayload()
		if p.Proto == ipProtoGRE {
			kind = TunnelGRE
		}
	default:
		return DropNone
	}
	// pay is a slice of the frame: where it starts is told by how much
	// of the frame's array lies past it.
	poff := cap(d.raw) - cap(pay)
	r := d.carried(kind, p.Proto, b[:poff+len(pay)], poff, p, nx)
	if nx.kind == TunnelNone || r != DropNone {
		return r
	}
	if p.Fragment {
		// A first fragment: its header is here, the rest of its payload
		// in later fragments that hold nothing to decode.
		d.markTunnelFragment(p)
	}
	if t := &p.Tunnel; !t.Src.IsValid() {
		t.Src, t.Dst, t.Proto, t.SrcPort, t.DstPort = p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort
	}
	resetIP(p)
	return DropNone
}

// IP protocol numbers of the encapsulations carried right on IP.
const (
	ipProtoIPv4 = 4
	ipProtoIPv6 = 41
	ipProtoGRE  = 47
)

// peek tells, from a few bytes, whether the IP packet at b[off:] carries
// an encapsulation, so that plain packets pay a few compares and a
// tunnel's carrier is not decoded by gopacket at all. For a carrier it
// returns the encapsulation's kind and where its payload lies; it finds
// those only in unfragmented packets whose lengths add up, without IPv4
// options or IPv6 extension headers. sure reports whether the answer is
// final; otherwise the packet is decoded and then looked at again.
func (d *Decoder) peek(b []byte, off int, v6 bool) (kind TunnelKind, poff, pend int, sure bool) {
	if d.noPeek {
		return
	}
	h := b[off:]
	if !v6 {
		if len(h) < 20 {
			return
		}
		proto := h[9]
		ihl := int(h[0]&0x0f) * 4
		switch proto {
		case ProtoUDP:
			if len(h) < ihl+4 {
				return
			}
			if kind = d.udpKind(binary.BigEndian.Uint16(h[ihl+2:])); kind == TunnelNone {
				return TunnelNone, 0, 0, true
			}
		case ipProtoIPv4, ipProtoIPv6:
			kind = TunnelIPIP
		case ipProtoGRE:
			kind = TunnelGRE
		default:
			return TunnelNone, 0, 0, true
		}
		// Options (IHL over 5) are left to gopacket, which checks them.
		tot := int(binary.BigEndian.Uint16(h[2:]))
		if h[0] != 0x45 || tot < 20 || tot > len(h) || h[6]&0x3f != 0 || h[7] != 0 {
			return TunnelNone, 0, 0, false
		}
		return peekPayload(kind, b, off+ihl, off+tot, proto)
	}
	if len(h) < 40 {
		return
	}
	nh := h[6]
	switch nh {
	case ProtoUDP:
		if len(h) < 44 {
			return
		}
		if kind = d.udpKind(binary.BigEndian.Uint16(h[42:])); kind == TunnelNone {
			return TunnelNone, 0, 0, true
		}
	case ipProtoIPv4, ipProtoIPv6:
		kind = TunnelIPIP
	case ipProtoGRE:
		kind = TunnelGRE
	case 0, 43, 44, 60: // hop-by-hop, routing, fragment, destination options
		return
	default:
		return TunnelNone, 0, 0, true
	}
	plen := int(binary.BigEndian.Uint16(h[4:]))
	if h[0]>>4 != 6 || plen == 0 || 40+plen > len(h) {
		return TunnelNone, 0, 0, false
	}
	return peekPayload(kind, b, off+40, off+40+plen, nh)
}

// peekPayload finishes peek for a carrier whose IP payload is b[poff:pend].
func peekPayload(kind TunnelKind, b []byte, poff, pend int, proto uint8) (TunnelKind, int, int, bool) {
	if proto != ProtoUDP {
		return kind, poff, pend, true
	}
	u := b[poff:pend]
	if len(u) < 8 {
		return TunnelNone, 0, 0, false
	}
	n := int(binary.BigEndian.Uint16(u[4:]))
	if n < 8 || n > len(u) {
		return TunnelNone, 0, 0, false
	}
	return kind, poff + 8, poff + n, true
}

// udpKind returns the encapsulation that UDP destination port port
// carries, or TunnelNone.
func (d *Decoder) udpKind(port uint16) TunnelKind {
	switch port {
	case portVXLAN:
		return TunnelVXLAN
	case portVXLANGPE:
		return TunnelVXLANGPE
	case portGeneve:
		return TunnelGeneve
	case portGTPU:
		return TunnelGTPU
	}
	if d.nVXLANPorts != 0 && d.isVXLANPort(port) {
		return TunnelVXLAN
	}
	if port == portLinuxVXLAN {
		return tunnelVXLANOtherPort
	}
	return TunnelNone
}

// tunnelVXLANOtherPort is udpKind's answer for UDP 8472 while it is not a
// VXLAN port: a datagram looked at, counted, and delivered unopened.
const tunnelVXLANOtherPort = numTunnelKinds

func (d *Decoder) isVXLANPort(port uint16) bool {
	for _, p := range d.vxlanPorts[:d.nVXLANPorts] {
		if p == port {
			return true
		}
	}
	return false
}

// carried reads the header of the encapsulation kind at b[off:], the
// payload of an IP packet of protocol proto, into nx. It leaves nx.kind
// TunnelNone and returns DropNone when a UDP payload is not the header
// its port promised: the packet is then plain UDP.
func (d *Decoder) carried(kind TunnelKind, proto uint8, b []byte, off int, p *Packet, nx *inner) DropReason {
	var r DropReason
	ok := true
	switch kind {
	case TunnelVXLAN:
		ok = vxlan(b, off, nx)
	case TunnelVXLANGPE:
		ok = vxlanGPE(b, off, nx)
	case TunnelGeneve:
		ok = geneve(b, off, nx)
	case TunnelGTPU:
		r, ok = gtpU(b, off, nx)
	case tunnelVXLANOtherPort:
		if vxlan(b, off, nx) {
			d.stats.Tunnels[TunnelVXLAN].OtherPort++
		}
		nx.kind = TunnelNone
		return DropNone
	case TunnelGRE:
		if r = gre(b, off, nx); nx.hasGREKey && !d.tenantSet && d.tenant == TenantGREKey {
			p.Tenant, d.tenantSet = nx.greKey, true
		}
	case TunnelIPIP:
		nx.start(TunnelIPIP, len(b), false)
		nx.et, nx.off = etIPv4, off
		if proto == ipProtoIPv6 {
			nx.et = etIPv6
		}
	}
	if !ok {
		d.stats.Tunnels[kind].NotTunnel++
		nx.kind = TunnelNone
		return DropNone
	}
	return d.failed(nx.kind, r)
}

// resetIP clears what p says of an IP packet, for the one it carries.
func resetIP(p *Packet) {
	p.Src, p.Dst = netip.Addr{}, netip.Addr{}
	p.Proto, p.TTL, p.IPID = 0, 0, 0
	p.Fragment, p.MoreFragments, p.FragOffset = false, false, 0
	p.HasPorts, p.SrcPort, p.DstPort, p.TCPFlags = false, 0, 0, 0
	p.Payload, p.PayloadLen, p.IPOffset = nil, 0, 0
}

func (d *Decoder) markTunnelFragment(p *Packet) {
	if d.frags == nil {
		d.frags = NewFragments()
	}
	d.frags.markTunnel(p)
}
