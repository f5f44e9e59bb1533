package main

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The tunnel cases carry the same attacks as the plain ones, each frame
// wrapped in an encapsulation as a mirror session, an overlay or a carrier
// network delivers it. Their attacks are shorter than the plain cases' (10 s,
// not 20) to keep the files small; the tail of lookups still runs to 100 s,
// so that each incident starts, gets its update and ends.
const (
	tunnelAttackSeconds = 10
	tunnelFrom          = 2 * time.Second
	tunnelTo            = tunnelFrom + tunnelAttackSeconds*time.Second
)

// traffic4 is what the IPv4 tunnel cases carry: an echo reflection toward
// 198.51.100.10 from 15 reflectors, 75 packets/s; an echo-chargen loop
// between 198.51.100.7:7 and 198.51.100.19:19, 10 packets/s each way; both
// from 2 s to 12 s; and DNS lookups to 100 s.
func traffic4(t *trace) {
	echoReflection(t, reflectors(t, 15, false), v4(198, 51, 100, 10), 75*tunnelAttackSeconds, tunnelFrom, tunnelTo)
	echoChargenLoop(t, v4(198, 51, 100, 7), v4(198, 51, 100, 19), 0, 10, tunnelFrom, tunnelTo)
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

// traffic6 is traffic4 over IPv6: the reflection toward 2001:db8:100::10
// from 15 reflectors of 2001:db8:300::/64, an echo-echo loop between
// [2001:db8:100::7]:7 and [2001:db8:200::7]:7 (20 packets/s each way),
// IPv6 lookups.
func traffic6(t *trace) {
	echoReflection(t, reflectors6(t, 15), v6("2001:db8:100::", 0x10), 75*tunnelAttackSeconds, tunnelFrom, tunnelTo)
	echoEchoLoop(t, ap(v6("2001:db8:100::", 7), 7), ap(v6("2001:db8:200::", 7), 7), tunnelFrom, tunnelTo)
	lookups(t, v6("2001:db8:100::", 0x100), v6("2001:db8:100::", 0x53), 0, 0, tailTo)
}

// traffic46 mixes the families: traffic4's reflection and lookups, and
// traffic6's loop, so that one encapsulation carries both.
func traffic46(t *trace) {
	echoReflection(t, reflectors(t, 15, false), v4(198, 51, 100, 10), 75*tunnelAttackSeconds, tunnelFrom, tunnelTo)
	echoEchoLoop(t, ap(v6("2001:db8:100::", 7), 7), ap(v6("2001:db8:200::", 7), 7), tunnelFrom, tunnelTo)
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

// reflectors6 returns n hosts of 2001:db8:300::/64 with random interface
// identifiers.
func reflectors6(t *trace, n int) []*host {
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = v6("2001:db8:300::", t.rng.Uint64())
	}
	return hosts(t.rng, addrs)
}

// wrapFunc returns the Ethernet frame that carries the Ethernet frame
// frame, sent at at, across an encapsulation.
type wrapFunc func(at time.Duration, frame []byte) []byte

// tunnelled returns the build of a case whose traffic arrives inside
// encapsulations: every frame that traffic makes, wrapped by each of the
// wrappers that newWraps returns, innermost first. The wrappers are made
// per run, so their counters (IP IDs, sequence numbers) start afresh, and
// see the frames in time order, so those count up on the wire.
func tunnelled(traffic func(*trace), newWraps func() []wrapFunc) func(*trace) {
	return func(t *trace) {
		traffic(t)
		slices.SortStableFunc(t.recs, func(a, b record) int { return cmp.Compare(a.at, b.at) })
		wraps := newWraps()
		for i := range t.recs {
			for _, wrap := range wraps {
				t.recs[i].data = wrap(t.recs[i].at, t.recs[i].data)
			}
		}
	}
}

// wraps is shorthand for newWraps functions.
func wraps(w ...wrapFunc) []wrapFunc { return w }

// underlay is the network between a tunnel's two ends, a and b: the
// mirror source and the sensor, or two sites. It lays the outer Ethernet
// and IP headers.
type underlay struct {
	a, b netip.Addr
	// twoWay is a tunnel between two sites: the two directions of a flow
	// cross it in opposite directions (the packet from the lower address
	// goes from a to b). Otherwise every frame goes from a to b, as a
	// mirror session sends it.
	twoWay bool
	ipID   [2]uint16 // the next IPv4 identification of a and of b
	buf    gopacket.SerializeBuffer
}

func newUnderlay(a, b string, twoWay bool) *underlay {
	return &underlay{
		a: netip.MustParseAddr(a), b: netip.MustParseAddr(b), twoWay: twoWay,
		ipID: [2]uint16{0x4a00, 0xb100}, buf: gopacket.NewSerializeBuffer(),
	}
}

// ends returns the outer source and destination of the tunnel packet that
// carries the IP packet ip, and whether it goes from b to a.
func (u *underlay) ends(ip []byte) (src, dst netip.Addr, back bool) {
	if u.twoWay && reverse(ip) {
		return u.b, u.a, true
	}
	return u.a, u.b, false
}

// reverse reports whether the IP packet ip crosses a two-way tunnel from
// its second end to its first: when its source is the higher address, so
// that the two directions of a flow go opposite ways.
func reverse(ip []byte) bool {
	s, d := ipAddrs(ip)
	return s.Compare(d) > 0
}

// packet returns the Ethernet frame of an IP packet from src to dst that
// carries payload as protocol proto; udp, when not nil, is laid first with
// its checksum.
func (u *underlay) packet(src, dst netip.Addr, proto layers.IPProtocol, udp *layers.UDP, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: macFor(src), DstMAC: macFor(dst), EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.NetworkLayer
	if src.Is4() {
		side := 0
		if src == u.b {
			side = 1
		}
		u.ipID[side]++
		ip = &layers.IPv4{
			Version: 4, Id: u.ipID[side], Flags: layers.IPv4DontFragment, TTL: 64, Protocol: proto,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
		}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	stack := []gopacket.SerializableLayer{eth, ip.(gopacket.SerializableLayer)}
	if udp != nil {
		must(udp.SetNetworkLayerForChecksum(ip))
		stack = append(stack, udp)
	}
	stack = append(stack, gopacket.Payload(payload))
	must(gopacket.SerializeLayers(u.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, stack...))
	return bytes.Clone(u.buf.Bytes())
}

// udp returns the frame of a UDP datagram across the underlay that
// carries the IP packet ip in payload, to port dport from a source port
// chosen by a hash of ip's flow, as VXLAN and GENEVE endpoints choose it
// to spread flows over paths (49152-65535).
func (u *underlay) udp(ip []byte, dport uint16, payload []byte) []byte {
	src, dst, _ := u.ends(ip)
	sport := 49152 + uint16(flowHash(ip)%16384)
	return u.packet(src, dst, layers.IPProtocolUDP, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, payload)
}

// ipOf returns the IP packet of an Ethernet frame, past its VLAN tags.
func ipOf(frame []byte) []byte {
	off := 12
	for et := binary.BigEndian.Uint16(frame[off:]); et == etherTypeDot1Q || et == etherTypeQinQ; et = binary.BigEndian.Uint16(frame[off:]) {
		off += 4
	}
	return frame[off+2:]
}

const (
	etherTypeDot1Q  = 0x8100
	etherTypeQinQ   = 0x88a8
	etherTypeTEB    = 0x6558 // transparent Ethernet bridging: an Ethernet frame
	etherTypeMPLS   = 0x8847
	etherTypePPPoE  = 0x8864
	etherTypeERSPAN = 0x88be // ERSPAN type I and II, in GRE
	etherTypeERSP3  = 0x22eb // ERSPAN type III, in GRE
)

// carried returns what an encapsulation whose header names its payload
// by EtherType carries of frame, and that EtherType: the whole frame when
// ethernet is set (0x6558), else its IP packet (0x0800 or 0x86dd).
func carried(frame []byte, ethernet bool) ([]byte, uint16) {
	if ethernet {
		return frame, etherTypeTEB
	}
	ip := ipOf(frame)
	return ip, protocolOf(ip)
}

// ipAddrs returns the addresses of an IPv4 or IPv6 packet.
func ipAddrs(ip []byte) (src, dst netip.Addr) {
	if ip[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	}
	return netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
}

// flowHash hashes an IP packet's addresses and the four bytes after its
// header (a TCP or UDP packet's ports).
func flowHash(ip []byte) uint32 {
	h := fnv.New32a()
	n := 40
	if ip[0]>>4 == 4 {
		h.Write(ip[12:20])
		n = int(ip[0]&0x0f) * 4
	} else {
		h.Write(ip[8:40])
	}
	h.Write(ip[n : n+4])
	return h.Sum32()
}

// vxlan wraps frames in VXLAN (RFC 7348) to UDP port, with network
// identifier vni.
//
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	|       VXLAN Network Identifier (VNI)          |   Reserved    |
func vxlan(u *underlay, port uint16, vni uint32) wrapFunc {
	return func(_ time.Duration, frame []byte) []byte {
		h := []byte{0x08, 0, 0, 0} // the I flag: the VNI is valid
		h = binary.BigEndian.AppendUint32(h, vni<<8)
		return u.udp(ipOf(frame), port, append(h, frame...))
	}
}

// vxlanGPE wraps the IP packets of frames in VXLAN-GPE (UDP 4790), whose
// next protocol says IPv4 (1) or IPv6 (2): no Ethernet header inside.
//
//	|R|R|Ver|I|P|B|O|       Reserved                |Next Protocol  |
//	|       VXLAN Network Identifier (VNI)          |   Reserved    |
func vxlanGPE(u *underlay, vni uint32) wrapFunc {
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		next := byte(1)
		if ip[0]>>4 == 6 {
			next = 2
		}
		h := []byte{0x0c, 0, 0, next} // version 0, the I and P flags
		h = binary.BigEndian.AppendUint32(h, vni<<8)
		return u.udp(ip, 4790, append(h, ip...))
	}
}

// geneveOption is one GENEVE option: class, type, and data whose length
// is a multiple of 4.
type geneveOption struct {
	class uint16
	typ   uint8
	data  []byte
}

// geneve wraps frames in GENEVE (RFC 8926, UDP 6081) with network
// identifier vni and options opts: the whole Ethernet frame (protocol
// 0x6558) when ethernet is set, else its IP packet (0x0800 or 0x86dd), as
// AWS Gateway Load Balancer sends it.
//
//	|Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//	|        Virtual Network Identifier (VNI)       |    Reserved   |
//	|          Option Class         |      Type     |R|R|R| Length  |  each option
//	|                  Variable-Length Option Data                  |
func geneve(u *underlay, vni uint32, ethernet bool, opts []geneveOption) wrapFunc {
	var optBytes []byte
	for _, o := range opts {
		optBytes = binary.BigEndian.AppendUint16(optBytes, o.class)
		optBytes = append(optBytes, o.typ, byte(len(o.data)/4))
		optBytes = append(optBytes, o.data...)
	}
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		inner, proto := carried(frame, ethernet)
		h := []byte{byte(len(optBytes) / 4), 0} // version 0; not OAM, no critical option
		h = binary.BigEndian.AppendUint16(h, proto)
		h = binary.BigEndian.AppendUint32(h, vni<<8)
		h = append(h, optBytes...)
		return u.udp(ip, 6081, append(h, inner...))
	}
}

// gwlbOptions returns the three options AWS Gateway Load Balancer adds
// (class 0x0108): the endpoint's ID and the attachment's ID, 8 bytes
// each, and a 4-byte flow cookie, here a hash of the flow. Its GENEVE
// header is then 40 bytes, and with IPv4 and UDP the 68 bytes of overhead
// AWS documents.
func gwlbOptions() []geneveOption {
	return []geneveOption{
		{class: 0x0108, typ: 1, data: []byte{0x0e, 0xc4, 0x77, 0x21, 0x5a, 0x0b, 0x19, 0x03}}, // GWLB endpoint ID
		{class: 0x0108, typ: 2, data: []byte{0x00, 0x00, 0x00, 0x00, 0x13, 0x57, 0x9b, 0xdf}}, // attachment ID
		{class: 0x0108, typ: 3, data: []byte{0, 0, 0, 0}},                                     // flow cookie: set per packet
	}
}

// greHeader says which of GRE's optional fields a tunnel sends, and
// what it carries.
type greHeader struct {
	key      uint32
	hasKey   bool
	seq      bool // sequence numbers, counting per sender from 0
	csum     bool
	ethernet bool // whole Ethernet frames (0x6558, as gretap sends them), not IP packets
}

// gre wraps frames in GRE (RFC 2784, with RFC 2890's key and sequence
// number), with the fields that g names: the whole Ethernet frame, or its
// IP packet (0x0800 or 0x86dd).
//
//	|C| |K|S| Reserved0       | Ver |         Protocol Type         |
//	|      Checksum (optional)      |       Reserved1 (Optional)    |
//	|                         Key (optional)                        |
//	|                 Sequence Number (Optional)                    |
func gre(u *underlay, g greHeader) wrapFunc {
	var next [2]uint32
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		src, dst, back := u.ends(ip)
		inner, proto := carried(frame, g.ethernet)
		var flags byte
		if g.csum {
			flags |= 0x80
		}
		if g.hasKey {
			flags |= 0x20
		}
		if g.seq {
			flags |= 0x10
		}
		h := []byte{flags, 0}
		h = binary.BigEndian.AppendUint16(h, proto)
		if g.csum {
			h = append(h, 0, 0, 0, 0) // filled below
		}
		if g.hasKey {
			h = binary.BigEndian.AppendUint32(h, g.key)
		}
		if g.seq {
			side := 0
			if back {
				side = 1
			}
			h = binary.BigEndian.AppendUint32(h, next[side])
			next[side]++
		}
		pkt := append(h, inner...)
		if g.csum {
			binary.BigEndian.PutUint16(pkt[4:], inetChecksum(pkt))
		}
		return u.packet(src, dst, layers.IPProtocolGRE, nil, pkt)
	}
}

// greSeq returns the GRE header with a sequence number (and no other
// option) that ERSPAN types II and III ride in, for protocol proto.
func greSeq(proto uint16, seq uint32) []byte {
	h := []byte{0x10, 0} // S
	h = binary.BigEndian.AppendUint16(h, proto)
	return binary.BigEndian.AppendUint32(h, seq)
}

// erspan1 wraps frames in ERSPAN type I: a GRE header without options,
// protocol 0x88be, then the mirrored frame; no ERSPAN header.
func erspan1(u *underlay) wrapFunc {
	return func(_ time.Duration, frame []byte) []byte {
		g := append([]byte{0, 0, 0x88, 0xbe}, frame...)
		return u.packet(u.a, u.b, layers.IPProtocolGRE, nil, g)
	}
}

// erspan2 wraps frames in ERSPAN type II of session, from the mirrored
// port index: GRE with a sequence number, protocol 0x88be, and an 8-byte
// ERSPAN header.
//
//	|  Ver  |          VLAN         | COS | En|T|    Session ID     |
//	|      Reserved         |                  Index                |
func erspan2(u *underlay, session uint16, index uint32) wrapFunc {
	var seq uint32
	return func(_ time.Duration, frame []byte) []byte {
		g := greSeq(etherTypeERSPAN, seq)
		seq++
		g = binary.BigEndian.AppendUint16(g, 1<<12)                // version 1 (type II), VLAN 0
		g = binary.BigEndian.AppendUint16(g, 3<<11|session&0x03ff) // COS 0, En 3 (tags kept as they were), T 0
		g = binary.BigEndian.AppendUint32(g, index&0xfffff)        // reserved, index
		g = append(g, frame...)
		return u.packet(u.a, u.b, layers.IPProtocolGRE, nil, g)
	}
}

// erspan3 wraps frames in ERSPAN type III of session, from hardware hwID:
// GRE with a sequence number, protocol 0x22eb, the 12-byte ERSPAN header
// and its 8-byte platform-specific subheader (platform ID 3: the port's
// index and the time in seconds). The header's timestamp counts 100 µs
// (granularity 00); the direction bit is 0 for ingress.
//
//	|  Ver  |          VLAN         | COS |BSO|T|     Session ID    |
//	|                          Timestamp                            |
//	|             SGT               |P|    FT   |   Hw ID   |D|Gra|O|
//	|  Platf ID |      Reserved     |          Port ID/Index        |
//	|                 Timestamp (seconds)                           |
func erspan3(u *underlay, session uint16, hwID uint8, port uint16) wrapFunc {
	var seq uint32
	return func(at time.Duration, frame []byte) []byte {
		g := greSeq(etherTypeERSP3, seq)
		seq++
		t := epoch.Add(at)
		g = binary.BigEndian.AppendUint16(g, 2<<12)                     // version 2 (type III), VLAN 0
		g = binary.BigEndian.AppendUint16(g, session&0x03ff)            // COS 0, BSO 0 (good frame), T 0
		g = binary.BigEndian.AppendUint32(g, uint32(t.UnixMicro()/100)) // timestamp, 100 µs units, wrapping
		g = binary.BigEndian.AppendUint16(g, 0)                         // SGT
		g = binary.BigEndian.AppendUint16(g, uint16(hwID&0x3f)<<4|0x01) // P 0, FT 0 (Ethernet), Hw ID, D 0, Gra 00, O 1
		g = binary.BigEndian.AppendUint32(g, 3<<26|uint32(port))        // platform ID 3, port index
		g = binary.BigEndian.AppendUint32(g, uint32(t.Unix()))          // seconds
		g = append(g, frame...)
		return u.packet(u.a, u.b, layers.IPProtocolGRE, nil, g)
	}
}

// Ethernet addresses of the label-switching routers and of a PPPoE access
// concentrator and its client.
var (
	lsrMAC    = [2]net.HardwareAddr{{0x02, 0xec, 0x4d, 0x50, 0x00, 0x01}, {0x02, 0xec, 0x4d, 0x50, 0x00, 0x02}}
	accessMAC = [2]net.HardwareAddr{{0x02, 0xec, 0x50, 0x50, 0x00, 0x01}, {0x02, 0xec, 0x50, 0x50, 0x00, 0x02}}
	// spanRouterMAC is the router whose two ports mirroredTwice mirrors.
	spanRouterMAC = net.HardwareAddr{0x02, 0xec, 0x00, 0x00, 0x00, 0x02}
)

// linkEnds returns the Ethernet source and destination of a frame
// between two routers that carries the IP packet ip, the way ends orders
// a two-way tunnel's.
func linkEnds(ip []byte, macs [2]net.HardwareAddr) (src, dst net.HardwareAddr) {
	if reverse(ip) {
		return macs[1], macs[0]
	}
	return macs[0], macs[1]
}

// linkFrame returns an Ethernet frame from src to dst of type et.
func linkFrame(src, dst net.HardwareAddr, et uint16, payload ...[]byte) []byte {
	f := append(append(append([]byte(nil), dst...), src...), byte(et>>8), byte(et))
	for _, p := range payload {
		f = append(f, p...)
	}
	return f
}

// mpls carries frames across an MPLS network between two routers, under
// the label stack labels (outermost first; the last gets the bottom of
// stack bit): their IP packets, or, with pseudowire set, the whole
// Ethernet frames behind a control word (RFC 4385: first nibble 0, and a
// sequence number that counts up from 1 per sender, skipping 0).
//
//	|                Label                  | TC  |S|      TTL      |  each entry
//	|0 0 0 0| Flags |FRG|  Length   |        Sequence Number        |  control word
func mpls(labels []uint32, pseudowire bool) wrapFunc {
	var seq [2]uint16
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		src, dst := linkEnds(ip, lsrMAC)
		var stack []byte
		for i, l := range labels {
			e := l<<12 | 64 // TC 0, TTL 64
			if i == len(labels)-1 {
				e |= 1 << 8
			}
			stack = binary.BigEndian.AppendUint32(stack, e)
		}
		if !pseudowire {
			return linkFrame(src, dst, etherTypeMPLS, stack, ip)
		}
		side := 0
		if reverse(ip) {
			side = 1
		}
		seq[side]++
		if seq[side] == 0 {
			seq[side] = 1
		}
		cw := binary.BigEndian.AppendUint32(nil, uint32(seq[side])) // flags, FRG and length 0
		return linkFrame(src, dst, etherTypeMPLS, stack, cw, frame)
	}
}

// pppoe carries the IP packets of frames in a PPPoE session (RFC 2516)
// between an access concentrator and its client: PPP protocol 0x0021 for
// IPv4, 0x0057 for IPv6.
//
//	|  Ver  | Type  |     Code      |          Session ID           |
//	|            Length             |         PPP protocol          |
func pppoe(session uint16) wrapFunc {
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		src, dst := linkEnds(ip, accessMAC)
		proto := uint16(0x0021)
		if ip[0]>>4 == 6 {
			proto = 0x0057
		}
		h := []byte{0x11, 0x00} // version 1, type 1, code 0: session data
		h = binary.BigEndian.AppendUint16(h, session)
		h = binary.BigEndian.AppendUint16(h, uint16(2+len(ip))) // the PPP protocol and packet
		h = binary.BigEndian.AppendUint16(h, proto)
		return linkFrame(src, dst, etherTypePPPoE, h, ip)
	}
}

// ipInIP carries the IP packets of frames right in the underlay's IP
// packets (protocol 4 for IPv4 inside, 41 for IPv6), as ipip, sit and
// ip6tnl devices do.
func ipInIP(u *underlay) wrapFunc {
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		src, dst, _ := u.ends(ip)
		proto := layers.IPProtocolIPv4
		if ip[0]>>4 == 6 {
			proto = layers.IPProtocolIPv6
		}
		return u.packet(src, dst, proto, nil, ip)
	}
}

// srv6 carries the IP packets of frames in IPv6 with a segment routing
// header (RFC 8754), as Linux's seg6 encapsulation makes them with one
// segment: the outer destination is the receiving end's segment ID,
// sid[0] for u.a and sid[1] for u.b, which the header lists alone with
// segments left 0; the next header is 4 (IPv4) or 41 (IPv6).
//
//	| Next Header   |  Hdr Ext Len  | Routing Type  | Segments Left |
//	|  Last Entry   |     Flags     |              Tag              |
//	|            Segment List[0] (128-bit IPv6 address)             |
func srv6(u *underlay, sid [2]netip.Addr) wrapFunc {
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		src, _, back := u.ends(ip)
		to := sid[1]
		if back {
			to = sid[0]
		}
		next := byte(layers.IPProtocolIPv4)
		if ip[0]>>4 == 6 {
			next = byte(layers.IPProtocolIPv6)
		}
		h := []byte{next, 2, 4, 0, 0, 0, 0, 0} // 16 bytes of segments; type 4; none left; last entry 0, no flags, tag 0
		h = append(h, to.AsSlice()...)
		return u.packet(src, to, layers.IPProtocolIPv6Routing, nil, append(h, ip...))
	}
}

// gtpu carries the IP packets of frames in GTP-U (3GPP TS 29.281, UDP
// 2152 both ways) between a base station (u.a) and the user plane
// function (u.b): each packet as a T-PDU with a PDU session container
// extension header as 5G sends it (downlink PDU type 0, uplink 1; QoS
// flow 9). The tunnel endpoint ID is the receiver's: teid[0] toward the
// base station, teid[1] toward the user plane function.
//
//	|Ver|P|*|E|S|N| Message Type  |            Length             |
//	|               Tunnel Endpoint Identifier (TEID)               |
//	|        Sequence Number        |   N-PDU No.   | Next Ext Type |
//	|  Ext Length   |PDU T.| Spare |R|R|   QFI     | Next Ext Type |
func gtpu(u *underlay, teid [2]uint32) wrapFunc {
	return func(_ time.Duration, frame []byte) []byte {
		ip := ipOf(frame)
		src, dst, _ := u.ends(ip)
		// Uplink goes from the base station (a) to the core (b).
		toCore := src == u.a
		h := []byte{0x34, 0xff} // version 1, GTP (not GTP'), E: an extension header; T-PDU
		h = binary.BigEndian.AppendUint16(h, uint16(8+len(ip)))
		rx, pduType := teid[0], byte(0)
		if toCore {
			rx, pduType = teid[1], 1
		}
		h = binary.BigEndian.AppendUint32(h, rx)
		h = append(h, 0, 0, 0, 0x85)       // no sequence number, no N-PDU number; next: PDU session container
		h = append(h, 1, pduType<<4, 9, 0) // one word; PDU type, QFI 9; no further extension
		return u.packet(src, dst, layers.IPProtocolUDP, &layers.UDP{SrcPort: 2152, DstPort: 2152}, append(h, ip...))
	}
}

// inetChecksum returns the Internet checksum (RFC 1071) of b.
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// mirroredTwice returns the build of a case whose every frame the sensor
// sees twice, as a span session that mirrors both the ingress and the
// egress port of a router delivers it: first as it came in on VLAN 10,
// addressed to the router, then 20-80 µs later as the router sent it on
// VLAN 20, from the router's MAC, with a TTL or hop limit one lower.
// (The router is another than the one whose MAC the frames of spoofed
// triggers carry: that one is upstream.)
func mirroredTwice(traffic func(*trace)) func(*trace) {
	return func(t *trace) {
		traffic(t)
		slices.SortStableFunc(t.recs, func(a, b record) int { return cmp.Compare(a.at, b.at) })
		n := len(t.recs)
		for i := range n {
			r := &t.recs[i]
			ip := ipOf(r.data)
			dst, src := net.HardwareAddr(r.data[0:6]), net.HardwareAddr(r.data[6:12])
			in := tagged(src, spanRouterMAC, 10, ip)
			out := tagged(spanRouterMAC, dst, 20, ip)
			routed(ipOf(out))
			r.data = in
			t.add(r.at+time.Duration(20+t.rng.IntN(61))*time.Microsecond, out)
		}
	}
}

// tagged returns an Ethernet frame from src to dst on VLAN vlan that
// carries the IP packet ip.
func tagged(src, dst net.HardwareAddr, vlan uint16, ip []byte) []byte {
	return linkFrame(src, dst, etherTypeDot1Q, []byte{byte(vlan >> 8), byte(vlan), byte(protocolOf(ip) >> 8), byte(protocolOf(ip))}, ip)
}

// routed lowers the TTL or hop limit of the IP packet ip by one, as a
// router forwarding it does, and mends the IPv4 header checksum.
func routed(ip []byte) {
	if ip[0]>>4 == 6 {
		ip[7]--
		return
	}
	ip[8]--
	ihl := int(ip[0]&0x0f) * 4
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip[:ihl]))
}

// tunnelScenarios returns the encapsulation cases, in the order
// pcaps/README.md lists them.
func tunnelScenarios() []scenario {
	t4 := "an echo reflection toward 198.51.100.10 (15 reflectors, 75 packets/s) and an\necho-chargen loop between 198.51.100.7:7 and 198.51.100.19:19 (10 packets/s\neach way) from 2 s to 12 s, and IPv4 DNS lookups"
	t6 := "an echo reflection toward 2001:db8:100::10 (15 reflectors of\n2001:db8:300::/64, 75 packets/s) and an echo-echo loop between\n[2001:db8:100::7]:7 and [2001:db8:200::7]:7 (20 packets/s each way) from 2 s to\n12 s, and IPv6 DNS lookups"
	t46 := "an IPv4 echo reflection toward 198.51.100.10 (15 reflectors, 75 packets/s)\nand an IPv6 echo-echo loop between [2001:db8:100::7]:7 and [2001:db8:200::7]:7\n(20 packets/s each way) from 2 s to 12 s, and IPv4 DNS lookups"
	expect := "Expect a reflection incident and a loop incident, each with start, update and\nend, and nothing about the tunnel's own endpoints."
	about := func(how, carries string) string {
		return reflow(fmt.Sprintf("%s It carries %s. %s", how, carries, expect))
	}
	return []scenario{
		{
			name: "vxlan",
			about: about(`VXLAN as AWS VPC Traffic Mirroring delivers it: every frame of the mirrored
interface, whole, in VXLAN (UDP 4789, VNI 1234567, the mirror session's) from
the mirror source 198.19.1.10 to the sensor 198.19.2.20.`, t4),
			build: tunnelled(traffic4, func() []wrapFunc {
				return wraps(vxlan(newUnderlay("198.19.1.10", "198.19.2.20", false), 4789, 1234567))
			}),
		},
		{
			name: "vxlan-ipv6",
			about: about(`VXLAN over IPv6 between two VTEPs, 2001:db8:ffff:1::1 and 2001:db8:ffff:2::1
(UDP 4789, VNI 100), each flow's directions crossing the other way.`, t6),
			build: tunnelled(traffic6, func() []wrapFunc {
				return wraps(vxlan(newUnderlay("2001:db8:ffff:1::1", "2001:db8:ffff:2::1", true), 4789, 100))
			}),
		},
		{
			name:     "vxlan-port-8472",
			settings: "vxlan_ports: [8472]\n",
			about: about(`VXLAN on UDP 8472, Linux's own default port, as flannel's VXLAN backend sends it
between two nodes, 198.19.3.1 and 198.19.3.2 (VNI 1). The case's config.yaml
names the port; without it the datagrams are plain UDP.`, t4),
			build: tunnelled(traffic4, func() []wrapFunc {
				return wraps(vxlan(newUnderlay("198.19.3.1", "198.19.3.2", true), 8472, 1))
			}),
		},
		{
			name: "vxlan-gpe",
			about: about(`VXLAN-GPE (UDP 4790, VNI 5000) between 198.19.3.1 and 198.19.3.2, carrying IP
packets with no Ethernet header: next protocol 1 (IPv4) or 2 (IPv6).`, t46),
			build: tunnelled(traffic46, func() []wrapFunc {
				return wraps(vxlanGPE(newUnderlay("198.19.3.1", "198.19.3.2", true), 5000))
			}),
		},
		{
			name: "geneve",
			about: about(`GENEVE (UDP 6081, VNI 0x0abcde) over IPv6 between 2001:db8:ffff:1::1 and
2001:db8:ffff:2::1, carrying whole Ethernet frames (protocol 0x6558), each
header with two options: class 0x0101 type 1 (4 bytes) and the experimental
class 0xffff type 2 (8 bytes).`, t4),
			build: tunnelled(traffic4, func() []wrapFunc {
				return wraps(geneve(newUnderlay("2001:db8:ffff:1::1", "2001:db8:ffff:2::1", true), 0x0abcde, true, []geneveOption{
					{class: 0x0101, typ: 1, data: []byte("ewch")},
					{class: 0xffff, typ: 2, data: []byte{0, 1, 2, 3, 4, 5, 6, 7}},
				}))
			}),
		},
		{
			name: "geneve-gwlb",
			about: about(`GENEVE as AWS Gateway Load Balancer sends it to an appliance: from 198.19.4.1 to
198.19.4.2, UDP 6081, VNI 0, the IP packet with no Ethernet header (protocol
0x0800 or 0x86dd), behind AWS's three options (class 0x0108: the endpoint ID,
the attachment ID, a flow cookie).`, t46),
			build: tunnelled(traffic46, func() []wrapFunc {
				return wraps(gwlb(newUnderlay("198.19.4.1", "198.19.4.2", false)))
			}),
		},
		{
			name: "gre",
			about: about(`GRE between two routers, 198.19.5.1 and 198.19.5.2, with a checksum, key 1001 and
sequence numbers, carrying IPv4 (protocol 0x0800) and IPv6 (0x86dd).`, t46),
			build: tunnelled(traffic46, func() []wrapFunc {
				return wraps(gre(newUnderlay("198.19.5.1", "198.19.5.2", true), greHeader{key: 1001, hasKey: true, seq: true, csum: true}))
			}),
		},
		{
			name: "gretap-ipv6",
			about: about(`GRE over IPv6 carrying whole Ethernet frames (protocol 0x6558), as Linux's
ip6gretap sends them, between 2001:db8:ffff:5::1 and 2001:db8:ffff:5::2, with
key 77 and sequence numbers.`, t4),
			build: tunnelled(traffic4, func() []wrapFunc {
				return wraps(gre(newUnderlay("2001:db8:ffff:5::1", "2001:db8:ffff:5::2", true), greHeader{key: 77, hasKey: true, seq: true, ethernet: true}))
			}),
		},
		{
			name: "erspan-1",
			about: about(`ERSPAN type I from a switch, 198.19.6.1, to the sensor, 198.19.6.100: GRE with
no options, protocol 0x88be, the mirrored frame right after.`, t4),
			build: tunnelled(traffic4, func() []wrapFunc {
				return wraps(erspan1(newUnderlay("198.19.6.1", "198.19.6.100", false)))
			}),
		},
		{
			name: "erspan-2",
			about: about(`ERSPAN type II from a switch, 198.19.6.1, to the sensor, 198.19.6.100: GRE
with sequence numbers, protocol 0x88be, session 100, port index 17.`, t6),
			build: tunnelled(traffic6, func() []wrapFunc {
				return wraps(erspan2(newUnderlay("198.19.6.1", "198.19.6.100", false), 100, 17))
			}),
		},
		{
			name: "erspan-3",
			about: about(`ERSPAN type III over IPv6 from a switch, 2001:db8:ffff:6::1, to the sensor,
2001:db8:ffff:6::100: GRE with sequence numbers, protocol 0x22eb, session 200,
hardware ID 5, frame type 0 (Ethernet), with the optional 8-byte
platform-specific subheader (platform ID 3, port index 0x0011).`, t4),
			build: tunnelled(traffic4, func() []wrapFunc {
				return wraps(erspan3(newUnderlay("2001:db8:ffff:6::1", "2001:db8:ffff:6::100", false), 200, 5, 0x0011))
			}),
		},
		{
			name: "mpls",
			about: about(`MPLS between two label-switching routers: one label (16001, bottom of stack)
before each IPv4 packet, EtherType 0x8847.`, t4),
			build: tunnelled(traffic4, func() []wrapFunc { return wraps(mpls([]uint32{16001}, false)) }),
		},
		{
			name: "mpls-two-labels",
			about: about(`MPLS with two labels, a transport label 16002 and a VPN label 24005 (bottom of
stack), before each IPv6 packet: an L3VPN across a provider's core.`, t6),
			build: tunnelled(traffic6, func() []wrapFunc { return wraps(mpls([]uint32{16002, 24005}, false)) }),
		},
		{
			name: "mpls-pseudowire",
			about: about(`Ethernet over MPLS: a transport label 16003 and a pseudowire label 299 (bottom of
stack), then the pseudowire control word (first nibble 0, a sequence number
per direction), then the customer's whole Ethernet frame.`, t4),
			build: tunnelled(traffic4, func() []wrapFunc { return wraps(mpls([]uint32{16003, 299}, true)) }),
		},
		{
			name: "pppoe",
			about: about(`PPPoE session 0x1a2b (EtherType 0x8864) between an access concentrator and its
client, PPP protocol 0x0021 for IPv4 and 0x0057 for IPv6.`, t46),
			build: tunnelled(traffic46, func() []wrapFunc { return wraps(pppoe(0x1a2b)) }),
		},
		{
			name: "ipip-ipv4",
			about: about(`IP in IPv4 between 198.19.7.1 and 198.19.7.2: IPv4 in IPv4 (protocol 4, as an ipip
device sends it) and IPv6 in IPv4 (protocol 41, as sit does).`, t46),
			build: tunnelled(traffic46, func() []wrapFunc { return wraps(ipInIP(newUnderlay("198.19.7.1", "198.19.7.2", true))) }),
		},
		{
			name: "ipip-ipv6",
			about: about(`IP in IPv6 between 2001:db8:ffff:7::1 and 2001:db8:ffff:7::2: IPv4 in IPv6
(next header 4) and IPv6 in IPv6 (41), as an ip6tnl device sends them.`, t46),
			build: tunnelled(traffic46, func() []wrapFunc {
				return wraps(ipInIP(newUnderlay("2001:db8:ffff:7::1", "2001:db8:ffff:7::2", true)))
			}),
		},
		{
			name: "srv6",
			about: about(`SRv6 between two routers, 2001:db8:ffff:9::1 and 2001:db8:ffff:9::2, as Linux's
seg6 encapsulation (mode encap, one segment) makes it: the outer IPv6 packet goes
to the other router's segment ID (2001:db8:5a::1 or 2001:db8:5b::1) with a
segment routing header that lists it alone, segments left 0, then IPv4 (next
header 4) or IPv6 (41).`, t46),
			build: tunnelled(traffic46, func() []wrapFunc {
				return wraps(srv6(newUnderlay("2001:db8:ffff:9::1", "2001:db8:ffff:9::2", true),
					[2]netip.Addr{netip.MustParseAddr("2001:db8:5a::1"), netip.MustParseAddr("2001:db8:5b::1")}))
			}),
		},
		{
			name: "gtpu",
			about: about(`GTP-U (UDP 2152) between a 5G base station, 198.19.8.1, and its user plane
function, 198.19.8.2: each packet a T-PDU with a PDU session container
extension header (QoS flow 9), tunnel endpoint ID 0x00a1b2c3 toward the base
station and 0x00d4e5f6 toward the core.`, t46),
			build: tunnelled(traffic46, func() []wrapFunc {
				return wraps(gtpu(newUnderlay("198.19.8.1", "198.19.8.2", true), [2]uint32{0x00a1b2c3, 0x00d4e5f6}))
			}),
		},
		{
			name: "nested-gtpu-mpls-erspan",
			about: about(`Three encapsulations deep: a switch mirrors a mobile backhaul link by ERSPAN type
II (198.19.6.1 to the sensor 198.19.6.100, session 300); the link carries MPLS
(label 16004) between two routers, and inside it GTP-U between a base station
(198.19.8.1) and its core (198.19.8.2), TEIDs as in gtpu.`, t4),
			build: tunnelled(traffic4, func() []wrapFunc {
				return wraps(
					gtpu(newUnderlay("198.19.8.1", "198.19.8.2", true), [2]uint32{0x00a1b2c3, 0x00d4e5f6}),
					mpls([]uint32{16004}, false),
					erspan2(newUnderlay("198.19.6.1", "198.19.6.100", false), 300, 3),
				)
			}),
		},
		{
			name:     "mirrored-twice",
			settings: "dedup: 1ms\n",
			about: reflow(`Every frame twice, as a span session that mirrors both the ingress and the egress
port of a router delivers it: first as it came in on VLAN 10, addressed to the
router, then 20-80 µs later as the router sent it on VLAN 20, from the router's
MAC, its TTL one lower. It carries ` + t4 + `. Each rate is twice the real one;
with dedup set to 1 ms, as config.yaml sets it, expect the incidents and rates
of the traffic seen once.`),
			build: mirroredTwice(traffic4),
		},
	}
}

// gwlb is geneve as AWS Gateway Load Balancer sends it: VNI 0, the IP
// packet, gwlbOptions with the flow cookie a hash of the flow.
func gwlb(u *underlay) wrapFunc {
	return func(at time.Duration, frame []byte) []byte {
		opts := gwlbOptions()
		binary.BigEndian.PutUint32(opts[2].data, flowHash(ipOf(frame)))
		return geneve(u, 0, false, opts)(at, frame)
	}
}

// reflow joins the lines of text and breaks them again before 80
// columns, for pcaps/README.md.
func reflow(text string) string {
	var b strings.Builder
	col := 0
	for _, w := range strings.Fields(text) {
		switch {
		case col == 0:
		case col+1+len(w) > 80:
			b.WriteByte('\n')
			col = 0
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}
