package capture

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/internal/annotated"
)

// frame reads a test frame written as annotated hex.
var frame = annotated.Hex

// Building blocks shared by the cases below.
const (
	ethHdr = `
		02 00 00 00 00 02  // dst MAC
		02 00 00 00 00 01  // src MAC
		`
	ipv4UDP = `
		45 00 00 20        // IPv4, IHL 5, total length 32
		12 34 00 00        // ID 0x1234, no flags, offset 0
		40 11 00 00        // TTL 64, proto UDP, checksum (unchecked)
		c0 00 02 01        // src 192.0.2.1
		c6 33 64 02        // dst 198.51.100.2
		9c 40 00 07        // UDP 40000 -> 7
		00 0c 00 00        // UDP length 12, checksum
		70 69 6e 67        // payload "ping"`
	ipv6UDP = `
		60 00 00 00        // IPv6, traffic class 0, flow 0
		00 0c 11 40        // payload length 12, next header UDP, hop limit 64
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01  // src 2001:db8::1
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02  // dst 2001:db8::2
		9c 40 00 07        // UDP 40000 -> 7
		00 0c 00 00        // UDP length 12, checksum
		70 69 6e 67        // payload "ping"`
)

var (
	v4src = netip.MustParseAddr("192.0.2.1")
	v4dst = netip.MustParseAddr("198.51.100.2")
	v6src = netip.MustParseAddr("2001:db8::1")
	v6dst = netip.MustParseAddr("2001:db8::2")
)

func TestDecodeLinkTypes(t *testing.T) {
	ts := time.Date(2024, 3, 19, 12, 0, 0, 123456000, time.UTC)
	cases := []struct {
		name     string
		link     layers.LinkType
		hex      string
		src, dst netip.Addr
		ttl      uint8
		vlans    []uint16
	}{
		{"ethernet ipv4", layers.LinkTypeEthernet, ethHdr + `08 00 // IPv4` + ipv4UDP, v4src, v4dst, 64, nil},
		{"ethernet ipv6", layers.LinkTypeEthernet, ethHdr + `86 dd // IPv6` + ipv6UDP, v6src, v6dst, 64, nil},
		{"802.1Q", layers.LinkTypeEthernet, ethHdr + `
			81 00 00 64  // 802.1Q, VLAN 100
			08 00        // IPv4` + ipv4UDP, v4src, v4dst, 64, []uint16{100}},
		{"QinQ", layers.LinkTypeEthernet, ethHdr + `
			88 a8 00 c8  // 802.1ad service tag, VLAN 200
			81 00 00 64  // 802.1Q customer tag, VLAN 100
			86 dd        // IPv6` + ipv6UDP, v6src, v6dst, 64, []uint16{200, 100}},
		{"linux SLL", layers.LinkTypeLinuxSLL, `
			00 00                    // packet type: to us
			00 01                    // ARPHRD_ETHER
			00 06                    // address length 6
			02 00 00 00 00 01 00 00  // address, padded to 8
			08 00                    // IPv4` + ipv4UDP, v4src, v4dst, 64, nil},
		{"linux SLL2", layers.LinkTypeLinuxSLL2, `
			86 dd                    // protocol IPv6
			00 00                    // reserved
			00 00 00 02              // interface index 2
			00 01                    // ARPHRD_ETHER
			00                       // packet type: to us
			06                       // address length 6
			02 00 00 00 00 01 00 00  // address, padded to 8` + ipv6UDP, v6src, v6dst, 64, nil},
		{"raw ipv4", layers.LinkTypeRaw, ipv4UDP, v4src, v4dst, 64, nil},
		{"raw ipv6", layers.LinkTypeRaw, ipv6UDP, v6src, v6dst, 64, nil},
		{"DLT_RAW 12", dltRaw, ipv4UDP, v4src, v4dst, 64, nil},
		{"LINKTYPE_IPV6", layers.LinkTypeIPv6, ipv6UDP, v6src, v6dst, 64, nil},
		{"BSD null ipv4", layers.LinkTypeNull, `02 00 00 00 // AF_INET, host byte order (LE)` + ipv4UDP, v4src, v4dst, 64, nil},
		{"BSD null ipv6", layers.LinkTypeNull, `1e 00 00 00 // AF_INET6 on Darwin (30)` + ipv6UDP, v6src, v6dst, 64, nil},
		{"OpenBSD loop ipv4", layers.LinkTypeLoop, `00 00 00 02 // AF_INET, network byte order` + ipv4UDP, v4src, v4dst, 64, nil},
		{"ipv6 extension headers", layers.LinkTypeRaw, `
			60 00 00 00  // IPv6
			00 24 00 40  // payload length 36, next header hop-by-hop, hop limit 64
			20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01  // src
			20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02  // dst
			3c 00 01 04 00 00 00 00  // hop-by-hop: next dest opts, PadN
			2b 00 01 04 00 00 00 00  // destination options: next routing, PadN
			11 00 04 00 00 00 00 00  // routing: next UDP, type 4, segments left 0
			9c 40 00 07 00 0c 00 00  // UDP 40000 -> 7, length 12
			70 69 6e 67              // "ping"`, v6src, v6dst, 64, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := frame(t, c.hex)
			d := NewDecoder()
			var p Packet
			f := Frame{Data: data, Timestamp: ts, CaptureLength: len(data), Length: len(data), LinkType: c.link}
			if r := d.Decode(&f, &p); r != DropNone {
				t.Fatalf("Decode: dropped: %v", r)
			}
			if p.Src != c.src || p.Dst != c.dst {
				t.Errorf("addresses %v -> %v, want %v -> %v", p.Src, p.Dst, c.src, c.dst)
			}
			if !p.HasPorts || p.SrcPort != 40000 || p.DstPort != 7 || p.Proto != ProtoUDP {
				t.Errorf("transport proto %d ports %v %d -> %d, want UDP 40000 -> 7", p.Proto, p.HasPorts, p.SrcPort, p.DstPort)
			}
			if string(p.Payload) != "ping" || p.PayloadLen != 4 {
				t.Errorf("payload %q (len %d), want \"ping\" (4)", p.Payload, p.PayloadLen)
			}
			if p.TTL != c.ttl || !p.Timestamp.Equal(ts) || p.Length != len(data) || p.LinkType != c.link {
				t.Errorf("ttl %d ts %v length %d link %v", p.TTL, p.Timestamp, p.Length, p.LinkType)
			}
			if got := p.VLANs[:p.NumVLANs]; !equalU16(got, c.vlans) {
				t.Errorf("VLANs %v, want %v", got, c.vlans)
			}
			if p.Fragment {
				t.Errorf("unfragmented packet marked as fragment")
			}
		})
	}
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeTCP(t *testing.T) {
	data := frame(t, `
		45 00 00 28  // IPv4, total length 40
		00 01 40 00  // ID 1, DF
		80 06 00 00  // TTL 128, TCP
		c0 00 02 01  // 192.0.2.1
		c6 33 64 02  // 198.51.100.2
		00 07 d4 31  // TCP 7 -> 54321
		00 00 00 01  // seq
		00 00 00 02  // ack
		50 12 ff ff  // data offset 5, flags SYN|ACK, window
		00 00 00 00  // checksum, urgent`)
	var p Packet
	r := NewDecoder().Decode(&Frame{Data: data, LinkType: layers.LinkTypeRaw, Length: len(data)}, &p)
	if r != DropNone || p.Proto != ProtoTCP || p.SrcPort != 7 || p.DstPort != 54321 ||
		p.TCPFlags != TCPSyn|TCPAck || p.TTL != 128 || p.IPID != 1 || p.PayloadLen != 0 {
		t.Fatalf("got %v %+v", r, p)
	}
}

func TestDecodeFragments(t *testing.T) {
	first := frame(t, `
		45 00 00 24  // IPv4, total length 36
		ab cd 20 00  // ID 0xabcd, MF, offset 0
		40 11 00 00  // TTL 64, UDP
		c6 33 64 07  // src 198.51.100.7 (the reflector)
		c0 00 02 0a  // dst 192.0.2.10 (the victim)
		00 07 9c 40  // UDP 7 -> 40000
		05 dc 00 00  // UDP length 1500: the datagram goes on in later fragments
		41 41 41 41 41 41 41 41  // first 8 payload bytes`)
	later := frame(t, `
		45 00 00 1c  // IPv4, total length 28
		ab cd 00 02  // ID 0xabcd, no MF, offset 2 (16 bytes)
		40 11 00 00  // TTL 64, UDP
		c6 33 64 07  // src
		c0 00 02 0a  // dst
		42 42 42 42 42 42 42 42  // payload bytes 8..15 of the datagram`)
	orphan := frame(t, `
		45 00 00 1c  // IPv4, total length 28
		99 99 00 02  // ID 0x9999 (first fragment never seen), offset 16 bytes
		40 11 00 00 c6 33 64 07 c0 00 02 0a
		42 42 42 42 42 42 42 42`)
	d := NewDecoder()
	ts := time.Unix(1700000000, 0)
	var p Packet
	if r := d.Decode(&Frame{Data: first, LinkType: layers.LinkTypeRaw, Timestamp: ts}, &p); r != DropNone {
		t.Fatal(r)
	}
	if !p.Fragment || !p.MoreFragments || p.FragOffset != 0 || !p.HasPorts || p.SrcPort != 7 || p.PayloadLen != 1492 || p.IPID != 0xabcd {
		t.Fatalf("first fragment: %+v", p)
	}
	if r := d.Decode(&Frame{Data: later, LinkType: layers.LinkTypeRaw, Timestamp: ts.Add(time.Millisecond)}, &p); r != DropNone {
		t.Fatal(r)
	}
	if !p.Fragment || p.MoreFragments || p.FragOffset != 16 || !p.HasPorts || p.SrcPort != 7 || p.DstPort != 40000 || p.PayloadLen != 8 {
		t.Fatalf("later fragment not attributed: %+v", p)
	}
	if r := d.Decode(&Frame{Data: orphan, LinkType: layers.LinkTypeRaw, Timestamp: ts}, &p); r != DropNone {
		t.Fatal(r)
	}
	if p.HasPorts {
		t.Fatalf("orphan fragment got ports: %+v", p)
	}
	// After the reassembly timeout the first fragment is forgotten.
	if r := d.Decode(&Frame{Data: later, LinkType: layers.LinkTypeRaw, Timestamp: ts.Add(time.Minute)}, &p); r != DropNone || p.HasPorts {
		t.Fatalf("stale fragment attributed: %v %+v", r, p)
	}
	if s := d.Stats(); s.Fragments != 4 || s.FragmentsMatched != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDecodeIPv6Fragments(t *testing.T) {
	hdr := `
		60 00 00 00  // IPv6
		00 18 2c 40  // payload length 24, next header fragment, hop limit 64
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 07  // src 2001:db8::7
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 0a  // dst 2001:db8::a`
	first := frame(t, hdr+`
		11 00 00 01 00 00 00 2a  // fragment: next UDP, offset 0, M, id 42
		00 07 00 07 00 40 00 00  // UDP 7 -> 7, length 64
		41 41 41 41 41 41 41 41  // payload`)
	later := frame(t, hdr+`
		11 00 00 10 00 00 00 2a  // fragment: next UDP, offset 2 (16 bytes), id 42
		42 42 42 42 42 42 42 42
		42 42 42 42 42 42 42 42`)
	d := NewDecoder()
	var p Packet
	if r := d.Decode(&Frame{Data: first, LinkType: layers.LinkTypeRaw}, &p); r != DropNone || !p.HasPorts || p.IPID != 42 || p.Proto != ProtoUDP || !p.MoreFragments {
		t.Fatalf("first: %v %+v", r, p)
	}
	if r := d.Decode(&Frame{Data: later, LinkType: layers.LinkTypeRaw}, &p); r != DropNone || !p.HasPorts || p.SrcPort != 7 || p.FragOffset != 16 || p.Proto != ProtoUDP {
		t.Fatalf("later: %v %+v", r, p)
	}
}

func TestDecodeDrops(t *testing.T) {
	cases := []struct {
		name string
		link layers.LinkType
		hex  string
		want DropReason
	}{
		{"ARP", layers.LinkTypeEthernet, ethHdr + `08 06 // ARP
			00 01 08 00 06 04 00 01 02 00 00 00 00 01 c0 00 02 01 00 00 00 00 00 00 c0 00 02 02`, DropNonIP},
		{"short ethernet", layers.LinkTypeEthernet, `02 00 00 00 00 02 02 00 // 8 bytes`, DropMalformedLink},
		{"truncated IPv4 header", layers.LinkTypeEthernet, ethHdr + `08 00 // IPv4
			45 00 00 20 12 34 // 6 bytes of header`, DropMalformedIPv4},
		{"IHL below 5", layers.LinkTypeRaw, `42 00 00 20 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 // IHL 2`, DropMalformedIPv4},
		{"truncated IPv6", layers.LinkTypeRaw, `60 00 00 00 00 0c 11 40 20 01 // 10 bytes`, DropMalformedIPv6},
		{"short UDP", layers.LinkTypeRaw, `
			45 00 00 18 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 // IPv4, length 24
			9c 40 00 07 // 4 bytes of UDP header`, DropMalformedUDP},
		{"UDP length below 8", layers.LinkTypeRaw, `
			45 00 00 1c 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02
			9c 40 00 07 00 04 00 00 // UDP length 4`, DropMalformedUDP},
		{"short TCP", layers.LinkTypeRaw, `
			45 00 00 1c 12 34 00 00 40 06 00 00 c0 00 02 01 c6 33 64 02
			00 07 d4 31 00 00 00 01 // 8 bytes of TCP header`, DropMalformedTCP},
		{"bad IPv6 extension", layers.LinkTypeRaw, `
			60 00 00 00 00 10 3c 40 // next header destination options
			20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
			20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02
			11 05 01 04 00 00 00 00 00 00 00 00 00 00 00 00 // claims 48 bytes, has 16`, DropMalformedIPv6},
		{"empty raw", layers.LinkTypeRaw, ``, DropMalformedIPv4},
		{"unsupported link type", layers.LinkType(147), ipv4UDP, DropUnsupportedLink},
		{"bad loopback family", layers.LinkTypeNull, `ff ff ff ff` + ipv4UDP, DropMalformedLink},
		{"IPv4 ethertype, version 7", layers.LinkTypeEthernet, ethHdr + `08 00 // IPv4
			75 00 00 20 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 // version 7
			9c 40 00 07 00 0c 00 00 70 69 6e 67`, DropMalformedIPv4},
		{"IPv6 ethertype, version 4", layers.LinkTypeEthernet, ethHdr + `86 dd // IPv6` +
			strings.Replace(ipv6UDP, "60 00 00 00        // IPv6", "40 00 00 00        // version 4", 1), DropMalformedIPv6},
		{"IPv4 length below IHL", layers.LinkTypeRaw, `
			46 00 00 14 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 00 00 00 00 // IHL 24, length 20`, DropMalformedIPv4},
		{"TCP data offset 2", layers.LinkTypeRaw, `
			45 00 00 28 12 34 00 00 40 06 00 00 c0 00 02 01 c6 33 64 02
			00 07 d4 31 00 00 00 01 00 00 00 00 20 02 ff ff 00 00 00 00 // offset 2`, DropMalformedTCP},
		{"TCP data offset past the frame", layers.LinkTypeRaw, `
			45 00 00 28 12 34 00 00 40 06 00 00 c0 00 02 01 c6 33 64 02
			00 07 d4 31 00 00 00 01 00 00 00 00 f0 02 ff ff 00 00 00 00 // offset 60`, DropMalformedTCP},
		{"short 802.1Q tag", layers.LinkTypeEthernet, ethHdr + `81 00 00 64 // a tag cut short`, DropMalformedLink},
		{"short SLL", layers.LinkTypeLinuxSLL, `00 00 00 01 00 06`, DropMalformedLink},
		{"short SLL2", layers.LinkTypeLinuxSLL2, `08 00 00 00 00 00 00 01`, DropMalformedLink},
		{"short loopback", layers.LinkTypeNull, `02 00`, DropMalformedLink},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := frame(t, c.hex)
			d := NewDecoder()
			var p Packet
			if r := d.Decode(&Frame{Data: data, LinkType: c.link, Length: len(data)}, &p); r != c.want {
				t.Fatalf("Decode = %v, want %v", r, c.want)
			}
			if s := d.Stats(); s.Dropped[c.want] != 1 || s.Decoded != 0 {
				t.Fatalf("stats %+v", s)
			}
			// A flood of broken frames costs no garbage either (but the
			// bad extension header, whose error is gopacket's own).
			f := &Frame{Data: data, LinkType: c.link, Length: len(data)}
			allocs := testing.AllocsPerRun(100, func() { d.Decode(f, &p) })
			if allocs != 0 && c.name != "bad IPv6 extension" && c.name != "bad loopback family" {
				t.Errorf("Decode allocates %.1f times per frame", allocs)
			}
		})
	}
}

func TestDecodeSnapLengthCut(t *testing.T) {
	data := frame(t, ipv4UDP)
	cut := data[:30] // IPv4 header, UDP header and 2 of 4 payload bytes
	var p Packet
	d := NewDecoder()
	if r := d.Decode(&Frame{Data: cut, LinkType: layers.LinkTypeRaw, Length: len(data), CaptureLength: len(cut)}, &p); r != DropNone {
		t.Fatal(r)
	}
	if string(p.Payload) != "pi" || p.PayloadLen != 4 || p.Length != len(data) {
		t.Fatalf("payload %q len %d length %d", p.Payload, p.PayloadLen, p.Length)
	}
	if d.Stats().Truncated != 1 {
		t.Fatalf("truncation not counted: %+v", d.Stats())
	}
}

func TestDecodeAllocsNothing(t *testing.T) {
	frames := []Frame{
		{Data: frame(t, ethHdr+`81 00 00 64 08 00`+ipv4UDP), LinkType: layers.LinkTypeEthernet},
		{Data: frame(t, ethHdr+`86 dd`+ipv6UDP), LinkType: layers.LinkTypeEthernet},
		{Data: frame(t, ethHdr+`08 06 00 01 08 00 06 04 00 01`), LinkType: layers.LinkTypeEthernet},
	}
	d := NewDecoder()
	var p Packet
	allocs := testing.AllocsPerRun(1000, func() {
		for i := range frames {
			d.Decode(&frames[i], &p)
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode allocates %.1f times per run, want 0", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	f := Frame{Data: frame(b, ethHdr+`81 00 00 64 08 00`+ipv4UDP), LinkType: layers.LinkTypeEthernet}
	d := NewDecoder()
	var p Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(f.Data)))
	for b.Loop() {
		d.Decode(&f, &p)
	}
}

// BenchmarkDecodeTunnels decodes plain Ethernet and the same packet in
// each kind of encapsulation.
func BenchmarkDecodeTunnels(b *testing.B) {
	frames := []struct{ name, hex string }{{"plain", ethIPv4}}
	short := map[string]string{
		"VXLAN in IPv4": "vxlan",
		"GENEVE with an option, carrying Ethernet": "geneve",
		"GRE carrying IPv4":                        "gre",
		"ERSPAN type II, VLAN from its header":     "erspan2",
		"MPLS, one label":                          "mpls",
		"PPPoE session, IPv4":                      "pppoe",
		"IPv4 in IPv4":                             "ipip",
		"GTP-U":                                    "gtpu",
		"GTP-U in MPLS in ERSPAN type II":          "gtpu-mpls-erspan2",
	}
	for _, c := range tunnelCases(b) {
		if name, ok := short[c.name]; ok {
			frames = append(frames, struct{ name, hex string }{name, c.hex})
		}
	}
	for _, fr := range frames {
		b.Run(fr.name, func(b *testing.B) {
			f := Frame{Data: frame(b, fr.hex), LinkType: layers.LinkTypeEthernet}
			d := NewDecoder()
			var p Packet
			if r := d.Decode(&f, &p); r != DropNone || p.DstPort != 7 {
				b.Fatalf("%v %+v", r, p)
			}
			b.ReportAllocs()
			for b.Loop() {
				d.Decode(&f, &p)
			}
		})
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder under every supported
// link type: it must never panic, a decoded packet must be consistent,
// and peeking at headers to spare gopacket's decoding must change
// nothing.
func FuzzDecode(f *testing.F) {
	f.Add(uint16(layers.LinkTypeEthernet), frame(f, ethHdr+`08 00`+ipv4UDP))                         // Ethernet IPv4 UDP
	f.Add(uint16(layers.LinkTypeEthernet), frame(f, ethHdr+`88 a8 00 c8 81 00 00 64 86 dd`+ipv6UDP)) // QinQ IPv6
	f.Add(uint16(layers.LinkTypeLinuxSLL2), frame(f, `86 dd 00 00 00 00 00 02 00 01 00 06 02 00 00 00 00 01 00 00`+ipv6UDP))
	f.Add(uint16(layers.LinkTypeNull), frame(f, `02 00 00 00`+ipv4UDP))                                                                               // BSD loopback
	f.Add(uint16(layers.LinkTypeRaw), frame(f, `45 00 00 24 ab cd 20 00 40 11 00 00 c6 33 64 07 c0 00 02 0a 00 07 9c 40 05 dc 00 00`))                // first fragment
	f.Add(uint16(layers.LinkTypeRaw), frame(f, `60 00 00 00 00 24 00 40`+strings.Repeat("00", 32)+`3c 00 01 04 00 00 00 00 2b 00 01 04 00 00 00 00`)) // truncated extension chain
	f.Add(uint16(layers.LinkTypeRaw), []byte{})
	for _, c := range tunnelCases(f) { // every encapsulation, and nested ones
		f.Add(uint16(layers.LinkTypeEthernet), frame(f, c.hex))
	}
	f.Add(uint16(layers.LinkTypeEthernet), frame(f, ethHdr+`08 00`+outer4(f, "11", udpTo(f, 4789, vxlanHdr+ethHdr+`08 00`+
		outer4(f, "2f", `00 00 88 47 00 06 41 3f`+"\n"+ipv4UDP))))) // MPLS in GRE in VXLAN
	f.Fuzz(func(t *testing.T, link uint16, data []byte) {
		d, slow := NewDecoder(), NewDecoder()
		slow.noPeek = true
		var p, q Packet
		fr := Frame{Data: data, LinkType: layers.LinkType(link), Length: len(data)}
		r := d.Decode(&fr, &p)
		// Peeking at headers to spare gopacket's decoding changes nothing.
		if r != slow.Decode(&fr, &q) || r == DropNone && !samePacket(&p, &q) || d.Stats() != slow.Stats() {
			t.Fatalf("with peek %v\n %+v\nwithout\n %+v", r, p, q)
		}
		// Nor does the pre-filter, with no port of interest, nor its
		// decoding of the frames it reads whole, with every port of
		// interest.
		prefilterSame(t, []Frame{fr}, noInterest{})
		prefilterSame(t, []Frame{fr}, &portInterest{all: true})
		if r != DropNone {
			return
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
			t.Fatalf("decoded packet with bad addresses: %+v", p)
		}
		if len(p.Payload) > len(data) {
			t.Fatalf("payload longer than the frame")
		}
		if p.IPOffset < 0 || p.IPOffset >= len(data) || data[p.IPOffset]>>4 != 4 && data[p.IPOffset]>>4 != 6 {
			t.Fatalf("IPOffset %d does not point at an IP header", p.IPOffset)
		}
		if tn := p.Tunnel; tn.Depth > maxTunnelDepth || (tn.Depth == 0) != (tn == Tunnel{}) ||
			tn.Depth > 0 && (tn.Kind == TunnelNone || tn.InnerKind == TunnelNone) {
			t.Fatalf("tunnel %+v", tn)
		}
	})
}
