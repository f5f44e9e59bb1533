package capture

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/internal/corpus"
)

// The tunnel cases carry ipv4UDP or ipv6UDP (40000 -> 7, "ping") inside
// headers whose lengths the helpers below compute from what they carry.
const (
	ethIPv4 = ethHdr + `08 00 // inner Ethernet: IPv4` + ipv4UDP
	ethIPv6 = ethHdr + `86 dd // inner Ethernet: IPv6` + ipv6UDP

	vxlanHdr = `
		08 00 00 00  // VXLAN: I flag
		12 34 56 00  // VNI 0x123456, reserved`
)

var (
	o4src, o4dst = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	o6src, o6dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
)

// ip4 is an IPv4 header from src to dst (hex) with protocol proto (hex)
// in front of payload.
func ip4(t testing.TB, src, dst, proto, payload string) string {
	n := 20 + len(frame(t, payload))
	return fmt.Sprintf(`
		45 00 %04x   // IPv4, total length %d
		00 01 00 00  // ID 1
		40 %s 00 00  // TTL 64, protocol, checksum
		%s           // src
		%s           // dst`, n, n, proto, src, dst) + "\n" + payload
}

// outer4 and outer6 carry payload from 10.0.0.1 to 10.0.0.2, or from
// fd00::1 to fd00::2.
func outer4(t testing.TB, proto, payload string) string {
	return ip4(t, "0a 00 00 01", "0a 00 00 02", proto, payload)
}

func outer6(t testing.TB, nh, payload string) string {
	n := len(frame(t, payload))
	return fmt.Sprintf(`
		60 00 00 00     // outer IPv6
		%04x %s 40      // payload length %d, next header, hop limit 64
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01  // src fd00::1
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02  // dst fd00::2`, n, nh, n) + "\n" + payload
}

// udpTo is a UDP header from port 50000 to dport in front of payload.
func udpTo(t testing.TB, dport uint16, payload string) string {
	n := 8 + len(frame(t, payload))
	return fmt.Sprintf(`
		c3 50 %04x   // UDP 50000 -> %d
		%04x 00 00   // length %d, checksum`, dport, dport, n, n) + "\n" + payload
}

// via is the Tunnel of a packet in one encapsulation of kind, carried by
// the outer header of outer4 (v6 false) or outer6.
func via(kind TunnelKind, id uint32, hasID bool, v6 bool, proto uint8, dport uint16) Tunnel {
	t := Tunnel{Depth: 1, Kind: kind, HasID: hasID, ID: id, InnerKind: kind, InnerHasID: hasID, InnerID: id,
		Src: o4src, Dst: o4dst, Proto: proto}
	if v6 {
		t.Src, t.Dst = o6src, o6dst
	}
	if proto == ProtoUDP {
		t.SrcPort, t.DstPort = 50000, dport
	}
	return t
}

// onLink is the Tunnel of a packet in one encapsulation on the link
// layer, which no IP header carries.
func onLink(kind TunnelKind, id uint32, labels ...uint32) Tunnel {
	t := Tunnel{Depth: 1, Kind: kind, HasID: true, ID: id, InnerKind: kind, InnerHasID: true, InnerID: id}
	t.NumLabels = uint8(copy(t.Labels[:], labels))
	return t
}

type tunnelCase struct {
	name   string
	hex    string // an Ethernet frame
	own    int    // the bytes of the packet's own link header inside the tunnel (0: it carries IP)
	v6     bool   // the inner packet is ipv6UDP
	tunnel Tunnel
	vlans  []uint16
	cfg    DecoderConfig
}

func tunnelCases(t testing.TB) []tunnelCase {
	eth4 := func(payload string) string { return ethHdr + `08 00 // IPv4` + payload }
	eth6 := func(payload string) string { return ethHdr + `86 dd // IPv6` + payload }
	gpe := via(TunnelVXLANGPE, 42, true, false, ProtoUDP, 4790)
	nested := via(TunnelERSPAN2, 0x155, true, false, 47, 0)
	nested.Depth, nested.InnerKind, nested.InnerID = 3, TunnelGTPU, 0xabcd
	nested.Labels[0], nested.NumLabels = 100, 1
	gpeNSH := gpe
	gpeNSH.Depth, gpeNSH.InnerKind, gpeNSH.InnerID = 2, TunnelNSH, 5
	mplsGRE := via(TunnelGRE, 0, false, false, 47, 0)
	mplsGRE.Depth, mplsGRE.InnerKind, mplsGRE.InnerHasID, mplsGRE.InnerID = 2, TunnelMPLS, true, 100
	mplsGRE.Labels[0], mplsGRE.NumLabels = 100, 1
	deepMPLS := onLink(TunnelMPLS, 200, 16, 17, 18, 19)
	return []tunnelCase{
		{name: "VXLAN in IPv4", own: 14, hex: eth4(outer4(t, "11", udpTo(t, 4789, vxlanHdr+ethIPv4))),
			tunnel: via(TunnelVXLAN, 0x123456, true, false, ProtoUDP, 4789)},
		{name: "VXLAN in IPv6, inner IPv6 on a VLAN", own: 18, v6: true,
			hex: eth6(outer6(t, "11", udpTo(t, 4789, vxlanHdr+ethHdr+`
				81 00 00 64  // inner 802.1Q, VLAN 100
				86 dd        // IPv6`+ipv6UDP))),
			tunnel: via(TunnelVXLAN, 0x123456, true, true, ProtoUDP, 4789), vlans: []uint16{100}},
		{name: "VXLAN on a VLAN: the inner frame's tags are the packet's", own: 14,
			hex:    ethHdr + `81 00 00 0a 08 00 // VLAN 10, IPv4` + outer4(t, "11", udpTo(t, 4789, vxlanHdr+ethIPv4)),
			tunnel: via(TunnelVXLAN, 0x123456, true, false, ProtoUDP, 4789)},
		{name: "VXLAN with group based policy", own: 14, hex: eth4(outer4(t, "11", udpTo(t, 4789, `
				88 40 12 34  // VXLAN: G and I flags; D flag; group policy 0x1234
				00 00 07 00  // VNI 7`+ethIPv4))),
			tunnel: via(TunnelVXLAN, 7, true, false, ProtoUDP, 4789)},
		{name: "VXLAN with reserved bits set, as some mirrors send", own: 14, hex: eth4(outer4(t, "11", udpTo(t, 4789, `
				ff 01 d1 f2  // VXLAN: every flag; reserved bits
				00 00 0b 00  // VNI 11; the last reserved byte zero`+ethIPv4))),
			tunnel: via(TunnelVXLAN, 11, true, false, ProtoUDP, 4789)},
		{name: "VXLAN on a configured port", own: 14, hex: eth4(outer4(t, "11", udpTo(t, 8472, vxlanHdr+ethIPv4))),
			tunnel: via(TunnelVXLAN, 0x123456, true, false, ProtoUDP, 8472), cfg: DecoderConfig{VXLANPorts: []uint16{8472}}},
		{name: "VXLAN behind IPv4 options", own: 14, hex: eth4(`
				46 00 00 56  // IPv4, IHL 6, total length 86
				00 01 00 00  // ID 1
				40 11 00 00  // TTL 64, UDP
				0a 00 00 01  // src 10.0.0.1
				0a 00 00 02  // dst 10.0.0.2
				01 01 01 00  // options: NOP NOP NOP, end
				c3 50 12 b5  // UDP 50000 -> 4789
				00 3e 00 00  // length 62` + vxlanHdr + ethIPv4),
			tunnel: via(TunnelVXLAN, 0x123456, true, false, ProtoUDP, 4789)},
		{name: "VXLAN-GPE carrying IPv4", hex: eth4(outer4(t, "11", udpTo(t, 4790, `
				0c 00 00 01  // VXLAN-GPE: I and P flags; next protocol IPv4
				00 00 2a 00  // VNI 42`+ipv4UDP))),
			tunnel: gpe},
		{name: "VXLAN-GPE carrying Ethernet", own: 14, hex: eth4(outer4(t, "11", udpTo(t, 4790, `
				0c 00 00 03  // VXLAN-GPE: I and P flags; next protocol Ethernet
				00 00 2a 00  // VNI 42`+ethIPv4))),
			tunnel: gpe},
		{name: "VXLAN-GPE without next protocol: Ethernet", own: 14, hex: eth4(outer4(t, "11", udpTo(t, 4790, `
				08 00 00 00  // VXLAN-GPE: I flag only
				00 00 2a 00  // VNI 42`+ethIPv4))),
			tunnel: gpe},
		{name: "VXLAN-GPE carrying NSH", hex: eth4(outer4(t, "11", udpTo(t, 4790, `
				0c 00 00 04  // VXLAN-GPE: I and P flags; next protocol NSH
				00 00 2a 00  // VNI 42
				0f c2 02 01  // NSH: version 0, TTL 63, 2 words; MD type 2; next protocol IPv4
				00 00 05 ff  // service path 5, index 255`+ipv4UDP))),
			tunnel: gpeNSH},
		{name: "GENEVE with an option, carrying Ethernet", own: 14, hex: eth4(outer4(t, "11", udpTo(t, 6081, `
				02 00 65 58  // GENEVE: version 0, 2 words of options; protocol Ethernet
				00 00 64 00  // VNI 100
				01 02 03 01  // option class 0x0102, type 3, 1 word of data
				de ad be ef  // the option's data`+ethIPv4))),
			tunnel: via(TunnelGeneve, 100, true, false, ProtoUDP, 6081)},
		{name: "GENEVE carrying IPv6, as a gateway load balancer sends", v6: true,
			hex: eth4(outer4(t, "11", udpTo(t, 6081, `
				00 00 86 dd  // GENEVE: no options; protocol IPv6
				00 00 07 00  // VNI 7`+ipv6UDP))),
			tunnel: via(TunnelGeneve, 7, true, false, ProtoUDP, 6081)},
		{name: "GRE carrying IPv4", hex: eth4(outer4(t, "2f", `
				00 00 08 00  // GRE: no flags; protocol IPv4`+ipv4UDP)),
			tunnel: via(TunnelGRE, 0, false, false, 47, 0)},
		{name: "GRE with checksum, key and sequence number, carrying IPv6", v6: true,
			hex: eth4(outer4(t, "2f", `
				b0 00 86 dd  // GRE: checksum, key and sequence flags; protocol IPv6
				00 00 00 00  // checksum, reserved
				00 00 03 e9  // key 1001
				00 00 00 07  // sequence number 7`+ipv6UDP)),
			tunnel: via(TunnelGRE, 1001, true, false, 47, 0)},
		{name: "GRE in IPv6 carrying Ethernet", own: 14, hex: eth6(outer6(t, "2f", `
				20 00 65 58  // GRE: key flag; protocol Ethernet
				00 00 00 2a  // key 42`+ethIPv4)),
			tunnel: via(TunnelGRE, 42, true, true, 47, 0)},
		{name: "ERSPAN type I", own: 14, hex: eth4(outer4(t, "2f", `
				00 00 88 be  // GRE: no sequence number; ERSPAN`+ethIPv4)),
			tunnel: via(TunnelERSPAN1, 0, false, false, 47, 0)},
		{name: "ERSPAN type II, VLAN from its header", own: 14, hex: eth4(outer4(t, "2f", `
				10 00 88 be  // GRE: sequence number; ERSPAN
				00 00 00 01  // sequence number 1
				10 0a 01 55  // ERSPAN II: version 1, VLAN 10; session 0x155
				00 00 00 00  // reserved, index`+ethIPv4)),
			tunnel: via(TunnelERSPAN2, 0x155, true, false, 47, 0), vlans: []uint16{10}},
		{name: "ERSPAN type II, the mirrored frame's own VLAN", own: 18, hex: eth4(outer4(t, "2f", `
				10 00 88 be  // GRE: sequence number; ERSPAN
				00 00 00 01  // sequence number 1
				10 0a 19 55  // ERSPAN II: version 1, VLAN 10; En 3 (frame keeps its tag), session 0x155
				00 00 00 00  // reserved, index`+ethHdr+`
				81 00 00 0a  // 802.1Q, VLAN 10
				08 00        // IPv4`+ipv4UDP)),
			tunnel: via(TunnelERSPAN2, 0x155, true, false, 47, 0), vlans: []uint16{10}},
		{name: "ERSPAN type III", own: 14, hex: eth4(outer4(t, "2f", `
				10 00 22 eb  // GRE: sequence number; ERSPAN III
				00 00 00 01  // sequence number 1
				20 14 00 2a  // ERSPAN III: version 2, VLAN 20; session 42
				00 00 00 00  // timestamp
				00 00 00 00  // SGT 0; frame type Ethernet, no platform subheader`+ethIPv4)),
			tunnel: via(TunnelERSPAN3, 42, true, false, 47, 0), vlans: []uint16{20}},
		{name: "ERSPAN type III with platform subheader, carrying IP", v6: true, hex: eth4(outer4(t, "2f", `
				10 00 22 eb  // GRE: sequence number; ERSPAN III
				00 00 00 01  // sequence number 1
				20 14 00 2a  // ERSPAN III: version 2, VLAN 20; session 42
				00 00 00 00  // timestamp
				00 00 08 01  // SGT 0; frame type 2 (IP); O: a platform subheader follows
				0c 00 00 00 00 00 00 00  // platform subheader`+ipv6UDP)),
			tunnel: via(TunnelERSPAN3, 42, true, false, 47, 0), vlans: []uint16{20}},
		{name: "MPLS, one label", hex: ethHdr + `
				88 47        // MPLS
				00 06 41 3f  // label 100, bottom of stack, TTL 63` + ipv4UDP,
			tunnel: onLink(TunnelMPLS, 100, 100)},
		{name: "MPLS multicast, two labels, IPv6", v6: true, hex: ethHdr + `
				88 48        // MPLS multicast
				00 01 00 40  // label 16, TTL 64
				00 0c 81 40  // label 200, bottom of stack` + ipv6UDP,
			tunnel: onLink(TunnelMPLS, 200, 16, 200)},
		{name: "MPLS, a stack deeper than Labels", hex: ethHdr + `
				88 47        // MPLS
				00 01 00 40  // label 16
				00 01 10 40  // label 17
				00 01 20 40  // label 18
				00 01 30 40  // label 19
				00 01 40 40  // label 20
				00 0c 81 40  // label 200, bottom of stack` + ipv4UDP,
			tunnel: deepMPLS},
		{name: "MPLS pseudowire with control word", own: 14, hex: ethHdr + `
				88 47        // MPLS
				00 3e 81 40  // label 1000, bottom of stack
				00 00 00 00  // pseudowire control word` + ethIPv4,
			tunnel: onLink(TunnelMPLS, 1000, 1000)},
		{name: "MPLS in GRE", hex: eth4(outer4(t, "2f", `
				00 00 88 47  // GRE: protocol MPLS
				00 06 41 3f  // label 100, bottom of stack`+ipv4UDP)),
			tunnel: mplsGRE},
		{name: "PPPoE session, IPv4", hex: ethHdr + `
				88 64        // PPPoE session
				11 00 12 34  // version 1, type 1, code 0; session 0x1234
				00 22 00 21  // length 34; PPP protocol IPv4` + ipv4UDP,
			tunnel: onLink(TunnelPPPoE, 0x1234)},
		{name: "PPPoE session on a VLAN, IPv6", v6: true, hex: ethHdr + `
				81 00 00 07  // 802.1Q, VLAN 7
				88 64        // PPPoE session
				11 00 00 01  // version 1, type 1, code 0; session 1
				00 36 00 57  // length 54; PPP protocol IPv6` + ipv6UDP,
			tunnel: onLink(TunnelPPPoE, 1), vlans: []uint16{7}},
		{name: "PPPoE session, compressed PPP protocol", hex: ethHdr + `
				88 64        // PPPoE session
				11 00 12 34  // version 1, type 1, code 0; session 0x1234
				00 21 21     // length 33; PPP protocol IPv4, one byte` + ipv4UDP,
			tunnel: onLink(TunnelPPPoE, 0x1234)},
		{name: "IPv4 in IPv4", hex: eth4(outer4(t, "04", ipv4UDP)), tunnel: via(TunnelIPIP, 0, false, false, 4, 0)},
		{name: "IPv6 in IPv4", v6: true, hex: eth4(outer4(t, "29", ipv6UDP)), tunnel: via(TunnelIPIP, 0, false, false, 41, 0)},
		{name: "IPv4 in IPv6", hex: eth6(outer6(t, "04", ipv4UDP)), tunnel: via(TunnelIPIP, 0, false, true, 4, 0)},
		{name: "IPv6 in IPv6", v6: true, hex: eth6(outer6(t, "29", ipv6UDP)), tunnel: via(TunnelIPIP, 0, false, true, 41, 0)},
		{name: "IPv6 in IPv6 behind a segment routing header", v6: true, hex: eth6(outer6(t, "2b", `
				29 02 04 00  // routing header: next IPv6, 24 bytes, type 4 (segment routing), segments left 0
				00 00 00 00  // last entry, flags, tag
				fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02  // segment fd00::2`+ipv6UDP)),
			tunnel: via(TunnelIPIP, 0, false, true, 41, 0)},
		{name: "GRE in IPv6 behind destination options", hex: eth6(outer6(t, "3c", `
				2f 00 01 04 00 00 00 00  // destination options: next GRE; PadN
				00 00 08 00              // GRE: protocol IPv4`+ipv4UDP)),
			tunnel: via(TunnelGRE, 0, false, true, 47, 0)},
		{name: "GTP-U", hex: eth4(outer4(t, "11", udpTo(t, 2152, `
				30 ff 00 20  // GTPv1-U: version 1, PT 1; T-PDU; length 32
				00 00 ab cd  // TEID 0xabcd`+ipv4UDP))),
			tunnel: via(TunnelGTPU, 0xabcd, true, false, ProtoUDP, 2152)},
		{name: "GTP-U in IPv6 with an extension header", v6: true, hex: eth6(outer6(t, "11", udpTo(t, 2152, `
				34 ff 00 3c  // GTPv1-U: version 1, PT 1, E flag; T-PDU; length 60
				00 00 00 07  // TEID 7
				00 00 00 85  // sequence number 0, N-PDU 0; next: PDU session container
				01 10 01 00  // extension: 1 word; QFI 1; no next extension`+ipv6UDP))),
			tunnel: via(TunnelGTPU, 7, true, true, ProtoUDP, 2152)},
		{name: "GTP-U in MPLS in ERSPAN type II", hex: eth4(outer4(t, "2f", `
				10 00 88 be  // GRE: sequence number; ERSPAN
				00 00 00 01  // sequence number 1
				10 0a 01 55  // ERSPAN II: version 1, VLAN 10; session 0x155
				00 00 00 00  // reserved, index`+ethHdr+`
				88 47        // MPLS
				00 06 41 3f  // label 100, bottom of stack`+
			ip4(t, "ac 10 00 01", "ac 10 00 02", "11", udpTo(t, 2152, `
				30 ff 00 20  // GTPv1-U: T-PDU; length 32
				00 00 ab cd  // TEID 0xabcd`+ipv4UDP)))),
			tunnel: nested, vlans: []uint16{10}},
	}
}

// TestDecodeTunnels decodes the packet inside every encapsulation: the
// inner packet is the packet, the tunnel is recorded, and the peek that
// spares plain packets and carriers gopacket's decoding gives what
// decoding every IP header with gopacket gives.
func TestDecodeTunnels(t *testing.T) {
	for _, c := range tunnelCases(t) {
		t.Run(c.name, func(t *testing.T) {
			data := frame(t, c.hex)
			d, err := NewDecoderWith(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			f := Frame{Data: data, LinkType: layers.LinkTypeEthernet, Length: len(data)}
			var p Packet
			if r := d.Decode(&f, &p); r != DropNone {
				t.Fatalf("Decode: dropped: %v", r)
			}
			src, dst, inner := v4src, v4dst, frame(t, ipv4UDP)
			if c.v6 {
				src, dst, inner = v6src, v6dst, frame(t, ipv6UDP)
			}
			if p.Src != src || p.Dst != dst || !p.HasPorts || p.SrcPort != 40000 || p.DstPort != 7 ||
				p.Proto != ProtoUDP || p.TTL != 64 || string(p.Payload) != "ping" || p.PayloadLen != 4 {
				t.Errorf("inner packet %v:%d -> %v:%d proto %d ttl %d payload %q (%d), want %v:40000 -> %v:7 UDP \"ping\"",
					p.Src, p.SrcPort, p.Dst, p.DstPort, p.Proto, p.TTL, p.Payload, p.PayloadLen, src, dst)
			}
			if !bytes.HasPrefix(p.Raw[p.IPOffset:], inner) || len(p.Raw) != len(data) {
				t.Errorf("IPOffset %d does not point at the inner packet in the whole frame", p.IPOffset)
			}
			// Rates count the packet on its own link, not the tunnel.
			if p.Length != c.own+len(inner) {
				t.Errorf("length %d, want %d", p.Length, c.own+len(inner))
			}
			if p.Tunnel != c.tunnel {
				t.Errorf("tunnel\n %+v\nwant\n %+v", p.Tunnel, c.tunnel)
			}
			if got := p.VLANs[:p.NumVLANs]; !equalU16(got, c.vlans) {
				t.Errorf("VLANs %v, want %v", got, c.vlans)
			}
			s := d.Stats()
			if s.Decoded != 1 || s.Tunnels[c.tunnel.Kind].Decoded != 1 || s.Tunnels[c.tunnel.InnerKind].Decoded != 1 || s.Truncated != 0 {
				t.Errorf("stats %+v", s)
			}

			slow, _ := NewDecoderWith(c.cfg)
			slow.noPeek = true
			var q Packet
			slow.Decode(&f, &q)
			if !samePacket(&p, &q) || slow.Stats() != s {
				t.Errorf("decoded without peeking:\n %+v\n %+v\nwith:\n %+v\n %+v", q, slow.Stats(), p, s)
			}

			allocs := testing.AllocsPerRun(100, func() { d.Decode(&f, &p) })
			if allocs != 0 {
				t.Errorf("Decode allocates %.1f times per frame", allocs)
			}
		})
	}
}

// samePacket compares two Packets decoded from the same frame.
func samePacket(p, q *Packet) bool {
	a, b := *p, *q
	if !bytes.Equal(a.Payload, b.Payload) || len(a.Raw) != len(b.Raw) {
		return false
	}
	a.Payload, b.Payload, a.Raw, b.Raw = nil, nil, nil, nil
	return reflect.DeepEqual(a, b)
}

// counter names one of a kind's TunnelStats.
type counter uint8

const (
	noCounter counter = iota
	malformed
	unknownPayload
	notTunnel
	otherPort
)

func (c counter) of(s TunnelStats) uint64 {
	switch c {
	case malformed:
		return s.Malformed
	case unknownPayload:
		return s.UnknownPayload
	case notTunnel:
		return s.NotTunnel
	case otherPort:
		return s.OtherPort
	}
	return 0
}

// nest wraps inner in wrap n times.
func nest(n int, wrap func(string) string, inner string) string {
	for range n {
		inner = wrap(inner)
	}
	return inner
}

// TestDecodeTunnelDrops feeds broken and hostile encapsulations: each is
// dropped under its reason and charged to its kind, without a panic, a
// read past the frame or an allocation.
func TestDecodeTunnelDrops(t *testing.T) {
	eth4 := func(payload string) string { return ethHdr + `08 00 // IPv4` + payload }
	gre := func(payload string) string { return eth4(outer4(t, "2f", payload)) }
	udp := func(port uint16, payload string) string { return eth4(outer4(t, "11", udpTo(t, port, payload))) }
	ipip := func(s string) string { return outer4(t, "04", s) }
	vxlanIn := func(s string) string { return outer4(t, "11", udpTo(t, 4789, vxlanHdr+ethHdr+`08 00`+s)) }
	greIn := func(s string) string { return outer4(t, "2f", `00 00 08 00 // GRE: IPv4`+s) }
	cases := []struct {
		name    string
		hex     string
		want    DropReason
		kind    TunnelKind
		counter counter
	}{
		{"GRE that claims a key and has none", gre(`20 00 08 00 // GRE: key flag; protocol IPv4`), DropMalformedTunnel, TunnelGRE, malformed},
		{"GRE that claims a sequence number cut short", gre(`10 00 08 00 00 00 // GRE: sequence flag, 2 of its 4 bytes`), DropMalformedTunnel, TunnelGRE, malformed},
		{"GRE cut short", gre(`00 00 // 2 bytes of GRE`), DropMalformedTunnel, TunnelGRE, malformed},
		{"GRE with the routing flag", gre(`40 00 08 00 // GRE: routing (RFC 1701)` + ipv4UDP), DropMalformedTunnel, TunnelGRE, malformed},
		{"GRE with recursion", gre(`01 00 08 00 // GRE: recursion control 1` + ipv4UDP), DropMalformedTunnel, TunnelGRE, malformed},
		{"GRE with reserved flags", gre(`00 80 08 00 // GRE: a reserved flag` + ipv4UDP), DropMalformedTunnel, TunnelGRE, malformed},
		{"GRE version 2", gre(`00 02 08 00 // GRE: version 2` + ipv4UDP), DropMalformedTunnel, TunnelGRE, malformed},
		{"GRE version 1, PPTP", gre(`
			30 01 88 0b  // GRE: key and sequence flags, version 1; PPP
			00 24 00 01  // payload length, call ID
			00 00 00 01  // sequence number
			ff 03 00 21  // PPP: IPv4` + ipv4UDP), DropUnknownTunnelPayload, TunnelGRE, unknownPayload},
		{"GRE carrying PPP", gre(`00 00 88 0b // GRE: protocol PPP
			ff 03 00 21 // PPP: IPv4` + ipv4UDP), DropUnknownTunnelPayload, TunnelGRE, unknownPayload},
		{"GRE carrying ARP", gre(`00 00 08 06 // GRE: protocol ARP
			00 01 08 00 06 04 00 01`), DropUnknownTunnelPayload, TunnelGRE, unknownPayload},
		{"GRE carrying IPv4 that is not", gre(`00 00 08 00 // GRE: IPv4
			65 00 00 20 00 01 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 // version 6`), DropMalformedIPv4, TunnelNone, noCounter},
		{"IP in IP behind a broken IPv4 option", eth4(`
			46 00 00 4c  // IPv4, IHL 6, total length 76
			00 01 00 00  // ID 1
			40 29 00 00  // TTL 64, IPv6 inside
			0a 00 00 01 0a 00 00 02
			30 30 00 00  // an option that claims 48 bytes of a 4-byte room` + ipv6UDP), DropMalformedIPv4, TunnelNone, noCounter},
		{"ERSPAN type II cut short", gre(`
			10 00 88 be  // GRE: sequence number; ERSPAN
			00 00 00 01  // sequence number
			10 0a        // 2 of ERSPAN's 8 bytes`), DropMalformedTunnel, TunnelERSPAN2, malformed},
		{"ERSPAN type II of version 2", gre(`
			10 00 88 be 00 00 00 01  // GRE: ERSPAN
			20 0a 01 55 00 00 00 00  // ERSPAN: version 2 where type II has 1` + ethIPv4), DropMalformedTunnel, TunnelERSPAN2, malformed},
		{"ERSPAN type III subheader past the frame", gre(`
			10 00 22 eb 00 00 00 01  // GRE: ERSPAN III
			20 14 00 2a 00 00 00 00  // version 2, VLAN 20, session 42; timestamp
			00 00 00 01              // O: a platform subheader follows
			00 00                    // 2 of its 8 bytes`), DropMalformedTunnel, TunnelERSPAN3, malformed},
		{"ERSPAN type III cut short", gre(`
			10 00 22 eb 00 00 00 01  // GRE: ERSPAN III
			20 14 00 2a 00 00        // 6 of its 12 bytes`), DropMalformedTunnel, TunnelERSPAN3, malformed},
		{"ERSPAN type III of an unknown frame type", gre(`
			10 00 22 eb 00 00 00 01  // GRE: ERSPAN III
			20 14 00 2a 00 00 00 00  // version 2, VLAN 20, session 42; timestamp
			00 00 14 00              // frame type 5` + ethIPv4), DropUnknownTunnelPayload, TunnelERSPAN3, unknownPayload},
		{"MPLS with no bottom of stack", ethHdr + `88 47 // MPLS` + strings.Repeat(`
			00 06 40 3f // label 100, not the bottom
			`, 5), DropMalformedTunnel, TunnelMPLS, malformed},
		{"MPLS with nothing after the stack", ethHdr + `88 47 00 06 41 3f // MPLS, label 100, bottom`, DropMalformedTunnel, TunnelMPLS, malformed},
		{"MPLS carrying neither IP nor a pseudowire", ethHdr + `88 47 00 06 41 3f // MPLS, label 100, bottom
			10 00 00 00 00 00 00 00 // first nibble 1`, DropUnknownTunnelPayload, TunnelMPLS, unknownPayload},
		{"MPLS pseudowire control word cut short", ethHdr + `88 47 00 06 41 3f // MPLS, label 100, bottom
			00 00 // 2 bytes of control word`, DropMalformedTunnel, TunnelMPLS, malformed},
		{"MPLS pseudowire carrying a short frame", ethHdr + `88 47 00 06 41 3f // MPLS, label 100, bottom
			00 00 00 00 // control word
			02 00 00 00 00 02 // 6 bytes of Ethernet`, DropMalformedLink, TunnelNone, noCounter},
		{"PPPoE discovery", ethHdr + `88 63 // PPPoE discovery
			11 09 00 00 00 04 // PADI
			01 01 00 00       // service name tag`, DropNonIP, TunnelNone, noCounter},
		{"PPPoE session carrying LCP", ethHdr + `88 64 // PPPoE session
			11 00 00 01 00 06 // session 1, length 6
			c0 21 01 01 00 04 // LCP configure request`, DropNonIP, TunnelNone, noCounter},
		{"PPPoE of version 2", ethHdr + `88 64 21 00 00 01 00 22 00 21` + ipv4UDP, DropMalformedTunnel, TunnelPPPoE, malformed},
		{"PPPoE cut short", ethHdr + `88 64 11 00 00 01 // 4 of 8 bytes`, DropMalformedTunnel, TunnelPPPoE, malformed},
		{"PPPoE shorter than its PPP protocol", ethHdr + `88 64 11 00 00 01 00 01 // length 1
			00 21` + ipv4UDP, DropMalformedTunnel, TunnelPPPoE, malformed},
		{"GENEVE carrying an unknown protocol", udp(6081, `00 00 88 0b 00 00 07 00 // GENEVE: protocol PPP
			ff 03 00 21`+ipv4UDP), DropUnknownTunnelPayload, TunnelGeneve, unknownPayload},
		{"VXLAN-GPE with an unknown next protocol", udp(4790, `0c 00 00 7f 00 00 2a 00 // VXLAN-GPE: next protocol 0x7f`+ipv4UDP),
			DropUnknownTunnelPayload, TunnelVXLANGPE, unknownPayload},
		{"NSH of MD type 0", udp(4790, `0c 00 00 04 00 00 2a 00 // VXLAN-GPE: NSH
			0f c2 00 01 00 00 05 ff // NSH: MD type 0`+ipv4UDP), DropMalformedTunnel, TunnelNSH, malformed},
		{"NSH of MD type 1 with the wrong length", udp(4790, `0c 00 00 04 00 00 2a 00 // VXLAN-GPE: NSH
			0f c2 01 01 00 00 05 ff // NSH: MD type 1 in 2 words, not 6`+ipv4UDP), DropMalformedTunnel, TunnelNSH, malformed},
		{"NSH longer than the frame", udp(4790, `0c 00 00 04 00 00 2a 00 // VXLAN-GPE: NSH
			0f d4 02 01 00 00 05 ff // NSH: 20 words`), DropMalformedTunnel, TunnelNSH, malformed},
		{"NSH on Ethernet carrying an unknown protocol", ethHdr + `89 4f // NSH
			0f c2 02 09 00 00 05 ff // next protocol 9`, DropUnknownTunnelPayload, TunnelNSH, unknownPayload},
		{"GTP-U echo request", udp(2152, `
			32 01 00 04  // GTPv1-U: S flag; echo request; length 4
			00 00 00 00  // TEID 0
			00 01 00 00  // sequence number 1`), DropNonIP, TunnelNone, noCounter},
		{"GTP-U carrying neither IPv4 nor IPv6", udp(2152, `30 ff 00 04 00 00 00 07 // T-PDU, length 4
			50 00 00 00`), DropUnknownTunnelPayload, TunnelGTPU, unknownPayload},
		{"VXLAN carrying ARP", udp(4789, vxlanHdr+ethHdr+`08 06 // ARP
			00 01 08 00 06 04 00 01`), DropNonIP, TunnelNone, noCounter},
		{"VXLAN carrying Ethernet in Ethernet", udp(4789, vxlanHdr+ethHdr+`65 58 // TEB on a link`+ethIPv4), DropNonIP, TunnelNone, noCounter},
		{"IP in IP one deeper than the limit", eth4(nest(maxTunnelDepth+1, ipip, ipv4UDP)), DropTunnelTooDeep, TunnelNone, noCounter},
		{"IP in IP nested 100 times", eth4(nest(100, ipip, ipv4UDP)), DropTunnelTooDeep, TunnelNone, noCounter},
		{"GRE nested 100 times", eth4(nest(100, greIn, ipv4UDP)), DropTunnelTooDeep, TunnelNone, noCounter},
		{"VXLAN nested 100 times", eth4(nest(100, vxlanIn, ipv4UDP)), DropTunnelTooDeep, TunnelNone, noCounter},
		{"MPLS in GRE nested 100 times", eth4(nest(100, func(s string) string {
			return outer4(t, "2f", `
				00 00 88 47 // GRE: MPLS
				00 06 41 3f // label 100, bottom`+s)
		}, ipv4UDP)), DropTunnelTooDeep, TunnelNone, noCounter},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := frame(t, c.hex)
			d := NewDecoder()
			f := Frame{Data: data, LinkType: layers.LinkTypeEthernet, Length: len(data)}
			var p Packet
			if r := d.Decode(&f, &p); r != c.want {
				t.Fatalf("Decode = %v, want %v", r, c.want)
			}
			s := d.Stats()
			if s.Dropped[c.want] != 1 || s.Decoded != 0 {
				t.Errorf("stats %+v", s)
			}
			if c.counter != noCounter && c.counter.of(s.Tunnels[c.kind]) != 1 {
				t.Errorf("%v not charged: %+v", c.kind, s.Tunnels[c.kind])
			}
			for k, ts := range s.Tunnels {
				if ts.Decoded != 0 || ts.NotTunnel != 0 || ts.OtherPort != 0 || (TunnelKind(k) != c.kind && ts != TunnelStats{}) {
					t.Errorf("%v charged: %+v", TunnelKind(k), ts)
				}
			}
			// Every shorter cut of the frame is dropped or decoded, never
			// read past.
			for n := range data {
				cut := Frame{Data: data[:n:n], LinkType: layers.LinkTypeEthernet, Length: len(data)}
				d.Decode(&cut, &p)
			}
			allocs := testing.AllocsPerRun(100, func() { d.Decode(&f, &p) })
			if allocs != 0 {
				t.Errorf("Decode allocates %.1f times per frame", allocs)
			}
		})
	}
}

// TestDecodeTunnelDepth decodes a packet at the deepest nesting allowed.
func TestDecodeTunnelDepth(t *testing.T) {
	data := frame(t, ethHdr+`08 00`+nest(maxTunnelDepth, func(s string) string { return outer4(t, "04", s) }, ipv4UDP))
	var p Packet
	if r := NewDecoder().Decode(&Frame{Data: data, LinkType: layers.LinkTypeEthernet}, &p); r != DropNone {
		t.Fatal(r)
	}
	if p.Src != v4src || p.Tunnel.Depth != maxTunnelDepth || p.Tunnel.Src != o4src || p.Tunnel.InnerKind != TunnelIPIP {
		t.Fatalf("got %v, tunnel %+v", p.Src, p.Tunnel)
	}
}

// TestDecodeNotTunnels sends UDP to the ports of the UDP encapsulations
// with payloads that are not theirs: each is the UDP datagram it is, so a
// port is no hiding place, and counted.
func TestDecodeNotTunnels(t *testing.T) {
	cases := []struct {
		name    string
		port    uint16
		payload string
		kind    TunnelKind
		counter counter
	}{
		{"not VXLAN", 4789, `70 69 6e 67 70 69 6e 67 70 69 6e 67 // "pingpingping"`, TunnelVXLAN, notTunnel},
		{"VXLAN cut short", 4789, `08 00 00 // 3 of 8 bytes`, TunnelVXLAN, notTunnel},
		{"VXLAN without a frame", 4789, vxlanHdr + `02 00 00 00 00 02 // 6 bytes of Ethernet`, TunnelVXLAN, notTunnel},
		{"VXLAN without the I flag", 4789, `00 00 00 00 12 34 56 00` + ethIPv4, TunnelVXLAN, notTunnel},
		{"VXLAN with a reserved last byte", 4789, `08 00 00 00 12 34 56 01` + ethIPv4, TunnelVXLAN, notTunnel},
		{"VXLAN-GPE of version 1", 4790, `1c 00 00 01 00 00 2a 00 // version 1` + ipv4UDP, TunnelVXLANGPE, notTunnel},
		{"VXLAN-GPE without next protocol, naming one", 4790, `08 00 00 01 00 00 2a 00` + ipv4UDP, TunnelVXLANGPE, notTunnel},
		{"GENEVE options past the payload", 6081, `05 00 65 58 00 00 64 00 // 5 words of options
			01 02 03 01 de ad be ef // 2 of them`, TunnelGeneve, notTunnel},
		{"GENEVE option overrunning the options", 6081, `01 00 65 58 00 00 64 00 // 1 word of options
			01 02 03 03 // an option of 3 more words` + ethIPv4, TunnelGeneve, notTunnel},
		{"GENEVE version 1", 6081, `40 00 65 58 00 00 64 00` + ethIPv4, TunnelGeneve, notTunnel},
		{"GTP version 2", 2152, `48 20 00 08 00 00 00 01 00 00 01 00 // GTPv2-C create session`, TunnelGTPU, notTunnel},
		{"GTP-U extension header of length 0", 2152, `
			34 ff 00 08 00 00 00 07  // E flag; T-PDU
			00 00 00 85              // next: PDU session container
			00 00 00 00              // length 0` + ipv4UDP, TunnelGTPU, notTunnel},
		{"GTP-U extension headers past its length", 2152, `
			34 ff 00 04 00 00 00 07  // E flag; T-PDU; length 4
			00 00 00 85              // next: PDU session container
			01 10 01 00              // past the length` + ipv4UDP, TunnelGTPU, notTunnel},
		{"GTP-U of an unknown message type", 2152, `30 10 00 20 00 00 ab cd` + ipv4UDP, TunnelGTPU, notTunnel},
		{"VXLAN on 8472, not configured", 8472, vxlanHdr + ethIPv4, TunnelVXLAN, otherPort},
		{"not VXLAN on 8472", 8472, `70 69 6e 67`, TunnelNone, noCounter},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := frame(t, ethHdr+`08 00`+outer4(t, "11", udpTo(t, c.port, c.payload)))
			for _, peek := range []bool{true, false} {
				d := NewDecoder()
				d.noPeek = !peek
				f := Frame{Data: data, LinkType: layers.LinkTypeEthernet, Length: len(data)}
				var p Packet
				if r := d.Decode(&f, &p); r != DropNone {
					t.Fatalf("Decode: %v", r)
				}
				if p.Src != o4src || p.Dst != o4dst || p.SrcPort != 50000 || p.DstPort != c.port ||
					p.PayloadLen != len(frame(t, c.payload)) || p.Tunnel != (Tunnel{}) || p.IPOffset != 14 {
					t.Errorf("peek %v: got %+v", peek, p)
				}
				s := d.Stats()
				if c.counter != noCounter && c.counter.of(s.Tunnels[c.kind]) != 1 {
					t.Errorf("peek %v: %v not charged: %+v", peek, c.kind, s.Tunnels[c.kind])
				}
			}
		})
	}
	// A datagram from an encapsulation's port is what it says it is.
	data := frame(t, ethHdr+`08 00`+ip4(t, "0a 00 00 01", "0a 00 00 02", "11", `
		12 b5 00 07  // UDP 4789 -> 7
		00 1c 00 00  // length 28`+vxlanHdr+`70 69 6e 67 70 69 6e 67 70 69 6e 67`))
	var p Packet
	d := NewDecoder()
	if r := d.Decode(&Frame{Data: data, LinkType: layers.LinkTypeEthernet}, &p); r != DropNone || p.SrcPort != 4789 || p.DstPort != 7 || p.Tunnel.Depth != 0 {
		t.Fatalf("from port 4789: %v %+v", r, p)
	}
	if s := d.Stats(); s.Tunnels[TunnelVXLAN] != (TunnelStats{}) {
		t.Fatalf("from port 4789 counted: %+v", s.Tunnels[TunnelVXLAN])
	}
}

// TestDecodeTunnelFragments decodes the packet inside the first fragment
// of a fragmented carrier, cut as a snap length would cut it, and drops
// the later fragments, which hold only more of that packet: never
// delivered as packets between the tunnel's endpoints.
func TestDecodeTunnelFragments(t *testing.T) {
	greFirst := frame(t, ethHdr+`08 00
		45 00 00 3c  // IPv4, total length 60
		00 09 20 00  // ID 9, more fragments, offset 0
		40 2f 00 00  // TTL 64, GRE
		0a 00 00 01 0a 00 00 02
		00 00 08 00  // GRE: IPv4
		45 00 00 3c 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02  // inner IPv4, total length 60
		9c 40 00 07 00 28 00 00  // UDP 40000 -> 7, length 40
		41 41 41 41 41 41 41 41  // 8 of 32 payload bytes`)
	greLater := frame(t, ethHdr+`08 00
		45 00 00 2c  // IPv4, total length 44
		00 09 00 05  // ID 9, offset 5 (40 bytes)
		40 2f 00 00 0a 00 00 01 0a 00 00 02
		42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42`)
	vxlanFirst := frame(t, ethHdr+`08 00
		45 00 00 54  // IPv4, total length 84
		00 0a 20 00  // ID 10, more fragments, offset 0
		40 11 00 00 0a 00 00 01 0a 00 00 02
		c3 50 12 b5 00 5a 00 00  // UDP 50000 -> 4789, length 90`+vxlanHdr+ethHdr+`08 00
		45 00 00 3c 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02  // inner IPv4, total length 60
		9c 40 00 07 00 28 00 00  // UDP 40000 -> 7, length 40
		41 41 41 41 41 41        // 6 of 32 payload bytes`)
	vxlanLater := frame(t, ethHdr+`08 00
		45 00 00 2e  // IPv4, total length 46
		00 0a 00 08  // ID 10, offset 8 (64 bytes)
		40 11 00 00 0a 00 00 01 0a 00 00 02
		42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42`)
	v6hdr := `
		60 00 00 00  // IPv6
		%s 2c 40     // payload length, next header fragment
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02`
	v6First := frame(t, ethHdr+`86 dd`+fmt.Sprintf(v6hdr, "00 30")+`
		2f 00 00 01 00 00 00 63  // fragment: next GRE, offset 0, more; ID 99
		00 00 08 00              // GRE: IPv4`+ipv4UDP+`
		00 00 00 00              // the rest of a fragment of 8-byte units`)
	v6Later := frame(t, ethHdr+`86 dd`+fmt.Sprintf(v6hdr, "00 10")+`
		2f 00 00 28 00 00 00 63  // fragment: next GRE, offset 5 (40 bytes); ID 99
		42 42 42 42 42 42 42 42`)

	for _, skip := range []bool{false, true} {
		d := NewDecoder()
		if skip {
			d.SkipFragments()
		}
		var p Packet
		decode := func(data []byte) DropReason {
			return d.Decode(&Frame{Data: data, LinkType: layers.LinkTypeEthernet, Length: len(data)}, &p)
		}
		for _, first := range [][]byte{greFirst, vxlanFirst} {
			if r := decode(first); r != DropNone || p.Src != v4src || p.DstPort != 7 || p.PayloadLen != 32 ||
				p.Fragment || p.Tunnel.Src != o4src || p.Tunnel.Depth != 1 {
				t.Fatalf("skip %v: first fragment: %v %+v", skip, r, p)
			}
		}
		if r := decode(v6First); r != DropNone || p.Src != v4src || p.Tunnel.Src != o6src || p.Tunnel.Kind != TunnelGRE {
			t.Fatalf("skip %v: IPv6 first fragment: %v %+v", skip, r, p)
		}
		for _, later := range [][]byte{greLater, vxlanLater, v6Later} {
			if r := decode(later); r != DropTunnelFragment {
				t.Errorf("skip %v: later fragment: %v %+v", skip, r, p)
			}
		}
		// The IPv6 first fragment holds the whole inner packet.
		if s := d.Stats(); s.Truncated != 2 || s.Decoded != 3 || s.Dropped[DropTunnelFragment] != 3 || s.Fragments != 0 {
			t.Errorf("skip %v: stats %+v", skip, s)
		}
	}
}

// TestDecodeTenant fills Packet.Tenant with the identifier the decoder
// was asked for, from the outermost header that has it.
func TestDecodeTenant(t *testing.T) {
	nested := tunnelCases(t)[len(tunnelCases(t))-1] // GTP-U in MPLS in ERSPAN II, VLAN 10
	if nested.tunnel.Depth != 3 {
		t.Fatalf("the last tunnel case is %q", nested.name)
	}
	vxlanInGRE := ethHdr + `81 00 00 05 08 00 // VLAN 5, IPv4` + outer4(t, "2f", `
		20 00 08 00  // GRE: key; IPv4
		00 00 00 0b  // key 11`+ip4(t, "ac 10 00 01", "ac 10 00 02", "11", udpTo(t, 4789, `
		08 00 00 00 00 00 16 00  // VXLAN 22`+ethHdr+`
		81 00 00 21 08 00        // inner VLAN 33, IPv4`+ipv4UDP)))
	twoVXLAN := ethHdr + `08 00` + outer4(t, "11", udpTo(t, 4789, `
		08 00 00 00 00 00 2c 00  // VXLAN 44`+ethHdr+`08 00`+ip4(t, "ac 10 00 01", "ac 10 00 02", "11", udpTo(t, 4789, `
		08 00 00 00 00 00 37 00  // VXLAN 55`+ethIPv4))))
	cases := []struct {
		hex  string
		key  TenantKey
		want uint32
	}{
		{nested.hex, TenantNone, 0},
		{nested.hex, TenantERSPANSession, 0x155},
		{nested.hex, TenantMPLSLabel, 100},
		{nested.hex, TenantTEID, 0xabcd},
		{nested.hex, TenantVLAN, 10},
		{nested.hex, TenantVNI, 0},
		{nested.hex, TenantGREKey, 0},
		{vxlanInGRE, TenantGREKey, 11},
		{vxlanInGRE, TenantVNI, 22},
		{vxlanInGRE, TenantVLAN, 33},
		{twoVXLAN, TenantVNI, 44},
		{ethHdr + `08 00` + ipv4UDP, TenantVNI, 0},
	}
	for _, c := range cases {
		d, err := NewDecoderWith(DecoderConfig{Tenant: c.key})
		if err != nil {
			t.Fatal(err)
		}
		data := frame(t, c.hex)
		var p Packet
		if r := d.Decode(&Frame{Data: data, LinkType: layers.LinkTypeEthernet}, &p); r != DropNone {
			t.Fatalf("%v: %v", c.key, r)
		}
		if p.Tenant != c.want {
			t.Errorf("tunnel %v, key %v: tenant %d, want %d", p.Tunnel.Kind, c.key, p.Tenant, c.want)
		}
	}
}

func TestDecoderConfig(t *testing.T) {
	for _, cfg := range []DecoderConfig{
		{VXLANPorts: []uint16{0}},
		{VXLANPorts: []uint16{6081}},
		{VXLANPorts: []uint16{4790}},
		{VXLANPorts: []uint16{2152}},
		{VXLANPorts: []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{Tenant: numTenantKeys},
	} {
		if _, err := NewDecoderWith(cfg); err == nil || !strings.HasPrefix(err.Error(), "capture: ") {
			t.Errorf("%+v: error %v", cfg, err)
		}
	}
	// The IANA port and repeats take no room.
	if _, err := NewDecoderWith(DecoderConfig{VXLANPorts: []uint16{4789, 1, 2, 3, 4, 5, 6, 7, 8, 8, 1}}); err != nil {
		t.Error(err)
	}
	for k := TenantNone; k < numTenantKeys; k++ {
		if got, err := ParseTenantKey(k.String()); err != nil || got != k {
			t.Errorf("ParseTenantKey(%q) = %v, %v", k, got, err)
		}
	}
	if _, err := ParseTenantKey("vlan-id"); err == nil || !strings.Contains(err.Error(), "gre-key") {
		t.Errorf("ParseTenantKey(vlan-id): %v", err)
	}
}

// TestTunnelNames pins the names stats and alerts show.
func TestTunnelNames(t *testing.T) {
	var names []string
	for _, k := range TunnelKinds() {
		names = append(names, k.String())
	}
	if got := strings.Join(names, " "); got != "vxlan vxlan-gpe geneve gre erspan1 erspan2 erspan3 mpls pppoe ipip gtpu nsh" {
		t.Errorf("kinds: %s", got)
	}
	names = names[:0]
	for _, r := range DropReasons() {
		names = append(names, r.String())
	}
	if got := strings.Join(names, " "); !strings.HasSuffix(got, " malformed_tunnel unknown_tunnel_payload tunnel_too_deep tunnel_fragment") {
		t.Errorf("drop reasons: %s", got)
	}
}

// TestCorpusTunnels decodes real captures of encapsulated traffic, made
// by others (../../shared/corpus/robust): the packets inside are found.
func TestCorpusTunnels(t *testing.T) {
	root := corpus.Dir(t, "corpus", "robust")
	a := netip.MustParseAddr
	cases := []struct {
		file            string
		frames, decoded uint64
		kind            TunnelKind
		tunnelled       uint64 // frames decoded inside kind
		// The first packet decoded inside kind (or, for none, the first).
		src, dst     netip.Addr
		sport, dport uint16
		proto        uint8
		tunnel       Tunnel // its Tunnel but for Labels
		vlans        []uint16
	}{
		{"arkime__gre-erspan-vxlan.pcap", 7, 7, TunnelERSPAN2, 7, a("10.16.27.12"), a("10.16.27.131"), 65174, 80, ProtoTCP,
			Tunnel{Depth: 2, Kind: TunnelERSPAN2, HasID: true, ID: 20, InnerKind: TunnelVXLANGPE, InnerHasID: true,
				Src: a("100.20.9.2"), Dst: a("100.20.9.1"), Proto: 47}, nil},
		{"arkime__gre-erspan.pcap", 6, 4, TunnelERSPAN2, 4, a("23.0.0.2"), a("23.0.0.3"), 0, 0, 1,
			Tunnel{Depth: 1, Kind: TunnelERSPAN2, HasID: true, ID: 100, InnerKind: TunnelERSPAN2, InnerHasID: true, InnerID: 100,
				Src: a("2.2.2.2"), Dst: a("1.1.1.1"), Proto: 47}, []uint16{23}},
		{"arkime__gtp-u.pcap", 102, 102, TunnelGTPU, 102, a("202.11.40.158"), a("192.168.40.178"), 0, 0, 1,
			Tunnel{Depth: 1, Kind: TunnelGTPU, HasID: true, ID: 1, InnerKind: TunnelGTPU, InnerHasID: true, InnerID: 1,
				Src: a("192.168.40.179"), Dst: a("192.168.40.178"), Proto: ProtoUDP, SrcPort: 2152, DstPort: 2152}, nil},
		{"arkime__ipv6-gtp6.pcap", 1, 1, TunnelGTPU, 1, a("1111:2222:3333:4444:5555:7777::"), a("1111:2222:3333:4444:5555:8888:a8ac:7bc0"), 53, 57030, ProtoUDP,
			Tunnel{Depth: 1, Kind: TunnelGTPU, HasID: true, ID: 36431426, InnerKind: TunnelGTPU, InnerHasID: true, InnerID: 36431426,
				Src: a("1111:2222:3333:4444:5555:6666:0:1"), Dst: a("1111:2222:3333:4444:5555:6666::"), Proto: ProtoUDP, SrcPort: 62301, DstPort: 2152},
			[]uint16{2048}},
		{"arkime__mpls-basic.pcap", 58, 52, TunnelMPLS, 17, a("10.1.2.1"), a("10.34.0.1"), 0, 0, 1,
			Tunnel{Depth: 1, Kind: TunnelMPLS, HasID: true, ID: 29, InnerKind: TunnelMPLS, InnerHasID: true, InnerID: 29}, nil},
		{"arkime__twovlan.pcap", 6, 6, TunnelNone, 0, a("10.0.0.1"), a("10.0.0.2"), 54422, 80, ProtoTCP, Tunnel{}, []uint16{201, 200}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			d := NewDecoder()
			var (
				p     Packet
				first bool
			)
			eachFrame(t, filepath.Join(root, c.file), func(f *Frame) {
				if d.Decode(f, &p) != DropNone || first || p.Tunnel.Kind != c.kind {
					return
				}
				first = true
				tun := p.Tunnel
				tun.Labels, tun.NumLabels = [4]uint32{}, 0
				if p.Src != c.src || p.Dst != c.dst || p.SrcPort != c.sport || p.DstPort != c.dport || p.Proto != c.proto ||
					tun != c.tunnel || !equalU16(p.VLANs[:p.NumVLANs], c.vlans) {
					t.Errorf("first packet %v:%d -> %v:%d proto %d vlans %v\n tunnel %+v\nwant %v:%d -> %v:%d proto %d vlans %v\n tunnel %+v",
						p.Src, p.SrcPort, p.Dst, p.DstPort, p.Proto, p.VLANs[:p.NumVLANs], tun,
						c.src, c.sport, c.dst, c.dport, c.proto, c.vlans, c.tunnel)
				}
			})
			s := d.Stats()
			if s.Frames != c.frames || s.Decoded != c.decoded || (c.kind != TunnelNone && s.Tunnels[c.kind].Decoded != c.tunnelled) {
				t.Errorf("frames %d decoded %d, %v %d; want %d %d %d", s.Frames, s.Decoded, c.kind, s.Tunnels[c.kind].Decoded,
					c.frames, c.decoded, c.tunnelled)
			}
		})
	}
}

// TestCorpusPeek decodes every frame of the real captures twice, with and
// without the peek that spares plain packets and tunnel carriers
// gopacket's decoding: both give the same verdicts, packets and counters.
func TestCorpusPeek(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpus.Dir(t, "corpus"), "*", "*"))
	if len(files) == 0 {
		t.Fatal("the corpus holds no captures")
	}
	for _, file := range files {
		src, err := OpenFiles([]string{file}, nil)
		if err != nil {
			continue // files the reader refuses are its tests' business
		}
		fast, slow := NewDecoder(), NewDecoder()
		slow.noPeek = true
		var (
			f    Frame
			p, q Packet
		)
		for i := 0; ; i++ {
			if err := src.ReadFrame(&f); err != nil {
				break
			}
			// A dropped frame leaves in p what was decoded before it failed.
			if r := fast.Decode(&f, &p); r != slow.Decode(&f, &q) || r == DropNone && !samePacket(&p, &q) {
				t.Errorf("%s frame %d: with peek\n %+v\nwithout\n %+v", filepath.Base(file), i, p, q)
				break
			}
		}
		src.Close()
		if fast.Stats() != slow.Stats() {
			t.Errorf("%s: stats with peek %+v, without %+v", filepath.Base(file), fast.Stats(), slow.Stats())
		}
	}
}
