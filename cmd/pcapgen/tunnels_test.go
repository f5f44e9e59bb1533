package main

import (
	"bytes"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// tunnelWant is what every frame of a tunnel case must decode to.
type tunnelWant struct {
	depth           uint8
	kind, innerKind capture.TunnelKind
	// id is the outermost identifier (VNI, GRE key, session, label, TEID)
	// when hasID; ids the identifiers seen innermost, whatever the
	// direction.
	hasID bool
	id    uint32
	ids   []uint32
	// outer are the underlay's two ends, when an IP header carried the
	// encapsulation.
	outer []string
	// labels is the outermost MPLS stack.
	labels []uint32
	// vxlanPorts configures the decoder.
	vxlanPorts []uint16
	// gopacket says whether gopacket decodes the encapsulation too, as a
	// second opinion on the bytes: it does not know VXLAN-GPE, ERSPAN
	// types I and III, the pseudowire control word, nor VXLAN off 4789.
	gopacket bool
}

var tunnelWants = map[string]tunnelWant{
	"vxlan": {depth: 1, kind: capture.TunnelVXLAN, innerKind: capture.TunnelVXLAN, hasID: true, id: 1234567,
		outer: []string{"198.19.1.10", "198.19.2.20"}, gopacket: true},
	"vxlan-ipv6": {depth: 1, kind: capture.TunnelVXLAN, innerKind: capture.TunnelVXLAN, hasID: true, id: 100,
		outer: []string{"2001:db8:ffff:1::1", "2001:db8:ffff:2::1"}, gopacket: true},
	"vxlan-port-8472": {depth: 1, kind: capture.TunnelVXLAN, innerKind: capture.TunnelVXLAN, hasID: true, id: 1,
		outer: []string{"198.19.3.1", "198.19.3.2"}, vxlanPorts: []uint16{8472}},
	"vxlan-gpe": {depth: 1, kind: capture.TunnelVXLANGPE, innerKind: capture.TunnelVXLANGPE, hasID: true, id: 5000,
		outer: []string{"198.19.3.1", "198.19.3.2"}},
	"geneve": {depth: 1, kind: capture.TunnelGeneve, innerKind: capture.TunnelGeneve, hasID: true, id: 0x0abcde,
		outer: []string{"2001:db8:ffff:1::1", "2001:db8:ffff:2::1"}, gopacket: true},
	"geneve-gwlb": {depth: 1, kind: capture.TunnelGeneve, innerKind: capture.TunnelGeneve, hasID: true, id: 0,
		outer: []string{"198.19.4.1", "198.19.4.2"}, gopacket: true},
	"gre": {depth: 1, kind: capture.TunnelGRE, innerKind: capture.TunnelGRE, hasID: true, id: 1001,
		outer: []string{"198.19.5.1", "198.19.5.2"}, gopacket: true},
	"gretap-ipv6": {depth: 1, kind: capture.TunnelGRE, innerKind: capture.TunnelGRE, hasID: true, id: 77,
		outer: []string{"2001:db8:ffff:5::1", "2001:db8:ffff:5::2"}, gopacket: true},
	"erspan-1": {depth: 1, kind: capture.TunnelERSPAN1, innerKind: capture.TunnelERSPAN1,
		outer: []string{"198.19.6.1", "198.19.6.100"}},
	"erspan-2": {depth: 1, kind: capture.TunnelERSPAN2, innerKind: capture.TunnelERSPAN2, hasID: true, id: 100,
		outer: []string{"198.19.6.1", "198.19.6.100"}, gopacket: true},
	"erspan-3": {depth: 1, kind: capture.TunnelERSPAN3, innerKind: capture.TunnelERSPAN3, hasID: true, id: 200,
		outer: []string{"2001:db8:ffff:6::1", "2001:db8:ffff:6::100"}},
	"mpls": {depth: 1, kind: capture.TunnelMPLS, innerKind: capture.TunnelMPLS, hasID: true, id: 16001,
		labels: []uint32{16001}, gopacket: true},
	"mpls-two-labels": {depth: 1, kind: capture.TunnelMPLS, innerKind: capture.TunnelMPLS, hasID: true, id: 24005,
		labels: []uint32{16002, 24005}, gopacket: true},
	"mpls-pseudowire": {depth: 1, kind: capture.TunnelMPLS, innerKind: capture.TunnelMPLS, hasID: true, id: 299,
		labels: []uint32{16003, 299}},
	"pppoe": {depth: 1, kind: capture.TunnelPPPoE, innerKind: capture.TunnelPPPoE, hasID: true, id: 0x1a2b, gopacket: true},
	"ipip-ipv4": {depth: 1, kind: capture.TunnelIPIP, innerKind: capture.TunnelIPIP,
		outer: []string{"198.19.7.1", "198.19.7.2"}, gopacket: true},
	"ipip-ipv6": {depth: 1, kind: capture.TunnelIPIP, innerKind: capture.TunnelIPIP,
		outer: []string{"2001:db8:ffff:7::1", "2001:db8:ffff:7::2"}, gopacket: true},
	"srv6": {depth: 1, kind: capture.TunnelIPIP, innerKind: capture.TunnelIPIP,
		outer: []string{"2001:db8:ffff:9::1", "2001:db8:ffff:9::2", "2001:db8:5a::1", "2001:db8:5b::1"}, gopacket: true},
	"gtpu": {depth: 1, kind: capture.TunnelGTPU, innerKind: capture.TunnelGTPU, hasID: true,
		ids: []uint32{0x00a1b2c3, 0x00d4e5f6}, outer: []string{"198.19.8.1", "198.19.8.2"}, gopacket: true},
	"nested-gtpu-mpls-erspan": {depth: 3, kind: capture.TunnelERSPAN2, innerKind: capture.TunnelGTPU, hasID: true, id: 300,
		ids: []uint32{0x00a1b2c3, 0x00d4e5f6}, outer: []string{"198.19.6.1", "198.19.6.100"}, labels: []uint32{16004}, gopacket: true},
	"mirrored-twice": {},
}

// inner is what TestTunnelCases looks at in a decoded packet.
type inner struct {
	at           time.Duration
	src, dst     netip.Addr
	sport, dport uint16
	ttl          uint8
	vlan         uint16
}

// decodeTunnelled reads a capture with the project's decoder, configured
// with vxlanPorts, and calls each with every frame's packet and the
// reason it was dropped.
func decodeTunnelled(t *testing.T, data []byte, vxlanPorts []uint16, each func(p *capture.Packet, r capture.DropReason)) capture.DecodeStats {
	t.Helper()
	src, err := capture.OpenFiles([]string{"-"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dec, err := capture.NewDecoderWith(capture.DecoderConfig{VXLANPorts: vxlanPorts})
	if err != nil {
		t.Fatal(err)
	}
	var f capture.Frame
	var p capture.Packet
	for {
		if err := src.ReadFrame(&f); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		each(&p, dec.Decode(&f, &p))
	}
	return dec.Stats()
}

// innermost decodes a frame with gopacket and returns its last IP layer
// and the UDP layer after it.
func innermost(frame []byte) (src, dst netip.Addr, udp *layers.UDP) {
	p := gopacket.NewPacket(frame, layers.LinkTypeEthernet, gopacket.Default)
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(l.SrcIP)
			dst, _ = netip.AddrFromSlice(l.DstIP)
			udp = nil
		case *layers.IPv6:
			src, _ = netip.AddrFromSlice(l.SrcIP)
			dst, _ = netip.AddrFromSlice(l.DstIP)
			udp = nil
		case *layers.UDP:
			udp = l
		}
	}
	return src, dst, udp
}

// TestTunnelCases reads every tunnel case with the decoder: each frame
// must be found inside its encapsulation (kind, depth, identifiers, the
// outer endpoints), gopacket must find the same innermost packet where it
// knows the encapsulation, and the packets inside must carry what the
// README promises: a reflection and a loop above the default thresholds.
func TestTunnelCases(t *testing.T) {
	cases := tunnelScenarios()
	if len(cases) != len(tunnelWants) {
		t.Errorf("%d tunnel cases, %d expectations", len(cases), len(tunnelWants))
	}
	for _, s := range cases {
		t.Run(s.name, func(t *testing.T) {
			want, ok := tunnelWants[s.name]
			if !ok {
				t.Fatal("no expectation")
			}
			data, n, _, err := s.generate()
			if err != nil {
				t.Fatal(err)
			}
			recs, _ := readCapture(t, data)
			var pkts []inner
			ids := map[uint32]bool{}
			outer := map[netip.Addr]bool{}
			i := 0
			decodeTunnelled(t, data, want.vxlanPorts, func(p *capture.Packet, r capture.DropReason) {
				defer func() { i++ }()
				if r != capture.DropNone {
					t.Fatalf("frame %d dropped: %v", i+1, r)
				}
				tun := p.Tunnel
				if tun.Depth != want.depth || tun.Kind != want.kind || tun.InnerKind != want.innerKind {
					t.Fatalf("frame %d: depth %d, %v ... %v; want depth %d, %v ... %v",
						i+1, tun.Depth, tun.Kind, tun.InnerKind, want.depth, want.kind, want.innerKind)
				}
				if tun.HasID != want.hasID || want.ids == nil && tun.ID != want.id {
					t.Fatalf("frame %d: id %v %d, want %v %d", i+1, tun.HasID, tun.ID, want.hasID, want.id)
				}
				if want.ids != nil {
					ids[tun.InnerID] = true
				}
				if tun.Src.IsValid() {
					outer[tun.Src], outer[tun.Dst] = true, true
				}
				if got := tun.Labels[:tun.NumLabels]; !slices.Equal(got, want.labels) {
					t.Fatalf("frame %d: labels %v, want %v", i+1, got, want.labels)
				}
				in := inner{at: recs[i].ts.Sub(epoch), src: p.Src, dst: p.Dst, sport: p.SrcPort, dport: p.DstPort, ttl: p.TTL}
				if p.NumVLANs > 0 {
					in.vlan = p.VLANs[0]
				}
				pkts = append(pkts, in)
				if !want.gopacket {
					return
				}
				src, dst, udp := innermost(recs[i].data)
				if src != p.Src || dst != p.Dst || udp == nil || uint16(udp.SrcPort) != p.SrcPort || uint16(udp.DstPort) != p.DstPort {
					t.Fatalf("frame %d: gopacket finds %v > %v %v inside, the decoder %v > %v", i+1, src, dst, udp, p.SrcAddrPort(), p.DstAddrPort())
				}
			})
			if len(pkts) != n {
				t.Fatalf("%d packets decoded, the capture has %d", len(pkts), n)
			}
			for _, id := range want.ids {
				if !ids[id] {
					t.Errorf("no packet inside identifier %#x; saw %v", id, ids)
				}
			}
			var outerWant []netip.Addr
			for _, a := range want.outer {
				outerWant = append(outerWant, netip.MustParseAddr(a))
			}
			for a := range outer {
				if !slices.Contains(outerWant, a) {
					t.Errorf("outer address %v, want only %v", a, want.outer)
				}
			}
			if len(outer) != len(outerWant) {
				t.Errorf("outer addresses %v, want %v", outer, want.outer)
			}
			checkAttacks(t, s.name, pkts)
			// Each incident can end by its 60 s timer before the input
			// ends, after its last 5 s window has passed.
			if last := pkts[len(pkts)-1].at; last < tunnelTo+70*time.Second {
				t.Errorf("input ends at %v, %v after the attack: too early for an end by timer", last, last-tunnelTo)
			}
		})
	}
}

// checkAttacks checks that the packets found inside a tunnel case carry
// its reflection and its loop above the default thresholds (50 replies/s
// toward the victim, 10 loop packets each way, within 5 s).
func checkAttacks(t *testing.T, name string, pkts []inner) {
	t.Helper()
	most := func(keep func(inner) bool) int {
		var d []decoded
		for _, p := range pkts {
			if keep(p) {
				d = append(d, decoded{at: p.at})
			}
		}
		return most(d, func(decoded) bool { return true }, count)
	}
	victim, a, b := "198.51.100.10", "198.51.100.7:7", "198.51.100.19:19"
	switch name {
	case "vxlan-ipv6", "erspan-2", "mpls-two-labels":
		victim, a, b = "2001:db8:100::10", "[2001:db8:100::7]:7", "[2001:db8:200::7]:7"
	case "vxlan-gpe", "geneve-gwlb", "gre", "pppoe", "ipip-ipv4", "ipip-ipv6", "srv6", "gtpu":
		a, b = "[2001:db8:100::7]:7", "[2001:db8:200::7]:7"
	}
	scale := 1
	if name == "mirrored-twice" {
		scale = 2
	}
	toVictim := func(p inner) bool { return p.sport == 7 && p.dst == netip.MustParseAddr(victim) }
	if n := most(toVictim); n < 75*5*scale {
		t.Errorf("%d replies toward %s in 5 s, want %d", n, victim, 75*5*scale)
	}
	ea, eb := netip.MustParseAddrPort(a), netip.MustParseAddrPort(b)
	for _, dir := range [][2]netip.AddrPort{{ea, eb}, {eb, ea}} {
		between := func(p inner) bool {
			return netip.AddrPortFrom(p.src, p.sport) == dir[0] && netip.AddrPortFrom(p.dst, p.dport) == dir[1]
		}
		if n := most(between); n < 5*10*scale {
			t.Errorf("%d loop packets %v > %v in 5 s, want %d", n, dir[0], dir[1], 5*10*scale)
		}
	}
	reflectors := map[netip.Addr]bool{}
	for _, p := range pkts {
		if toVictim(p) {
			reflectors[p.src] = true
		}
	}
	if len(reflectors) != 15 {
		t.Errorf("%d reflectors, want 15", len(reflectors))
	}
}

// TestVXLANPortNeedsConfig: the 8472 case is plain UDP to a decoder not
// told the port, which is why its config.yaml names it.
func TestVXLANPortNeedsConfig(t *testing.T) {
	i := slices.IndexFunc(tunnelScenarios(), func(s scenario) bool { return s.name == "vxlan-port-8472" })
	data, _, _, err := tunnelScenarios()[i].generate()
	if err != nil {
		t.Fatal(err)
	}
	inside := 0
	st := decodeTunnelled(t, data, nil, func(p *capture.Packet, r capture.DropReason) {
		if r == capture.DropNone && (p.Tunnel.Depth != 0 || p.DstPort != 8472 && p.SrcPort != 8472) {
			inside++
		}
	})
	if inside != 0 {
		t.Errorf("%d packets decoded as other than UDP to 8472 without the port configured", inside)
	}
	if st.Tunnels[capture.TunnelVXLAN].OtherPort == 0 {
		t.Error("VXLAN on 8472 not counted as seen on another port")
	}
	if string(tunnelScenarios()[i].config()) != "vxlan_ports: [8472]\n" {
		t.Errorf("config.yaml %q does not name the port", tunnelScenarios()[i].config())
	}
}

// TestMirroredTwice: every packet of the case comes twice, the copy within
// 100 µs, with the TTL one lower and on the other VLAN: what --dedup must
// fold, and nothing else differs in the IP packet but the TTL and checksum.
func TestMirroredTwice(t *testing.T) {
	i := slices.IndexFunc(tunnelScenarios(), func(s scenario) bool { return s.name == "mirrored-twice" })
	data, _, _, err := tunnelScenarios()[i].generate()
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := readCapture(t, data)
	type seen struct {
		at   time.Duration
		ttl  uint8
		vlan uint16
	}
	first := map[string]seen{}
	pairs := 0
	for _, r := range recs {
		ip := bytes.Clone(ipOf(r.data))
		vlan := uint16(r.data[14]&0x0f)<<8 | uint16(r.data[15])
		var ttl uint8
		if ip[0]>>4 == 4 {
			ttl = ip[8]
			ip[8], ip[10], ip[11] = 0, 0, 0
		} else {
			ttl = ip[7]
			ip[7] = 0
		}
		at := r.ts.Sub(epoch)
		f, ok := first[string(ip)]
		if !ok {
			first[string(ip)] = seen{at, ttl, vlan}
			continue
		}
		delete(first, string(ip))
		pairs++
		if at-f.at > 100*time.Microsecond || ttl != f.ttl-1 || f.vlan != 10 || vlan != 20 {
			t.Fatalf("copy at %v: %v after, TTL %d after %d, VLAN %d after %d", at, at-f.at, ttl, f.ttl, vlan, f.vlan)
		}
	}
	if len(first) != 0 || pairs*2 != len(recs) {
		t.Errorf("%d frames, %d pairs, %d without a copy", len(recs), pairs, len(first))
	}
}
