package detect

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/gopacket/gopacket/layers"
)

// vxlan42 is a VXLAN tunnel between two VTEPs, as the decoder fills it.
var vxlan42 = capture.Tunnel{
	Depth: 1, Kind: capture.TunnelVXLAN, HasID: true, ID: 42,
	InnerKind: capture.TunnelVXLAN, InnerHasID: true, InnerID: 42,
	Src: netip.MustParseAddr("203.0.113.1"), Dst: netip.MustParseAddr("198.51.100.2"),
	Proto: capture.ProtoUDP, SrcPort: 51000, DstPort: 4789,
}

// via puts the packets in tunnel tun and tenant tenant, as the decoder
// would have.
func via(tun capture.Tunnel, tenant uint32, ps []*capture.Packet) []*capture.Packet {
	for _, p := range ps {
		p.Tunnel, p.Tenant = tun, tenant
	}
	return ps
}

// kindTraffic returns, for each kind, traffic that raises it under
// homeConfig.
func kindTraffic() map[Kind]func() []*capture.Packet {
	return map[Kind]func() []*capture.Packet{
		KindReflection: func() []*capture.Packet { return reflected(base, 800, 4000, 12, "10.1.0.10") },
		KindLoop:       func() []*capture.Packet { return pingPong(base, 40, 800, "10.1.0.19:19", "10.1.0.7:7", 64) },
		KindSpoofedFlood: func() []*capture.Packet {
			bogons := []string{"0.1.2.3", "127.0.0.1", "224.0.0.5", "240.1.1.1"}
			return every(base, 150, 1500, func(i int, ts time.Time) *capture.Packet {
				return udp(ts, bogons[i%len(bogons)]+":1234", "198.51.100.80:7", nil)
			})
		},
		KindScan: func() []*capture.Packet {
			return sweep(base, "81.2.0.66", 40, []int{7}, func(ts time.Time, src, dst string) *capture.Packet {
				return udp(ts, src, dst, []byte("\r\n\r\n"))
			})
		},
		KindExposed: func() []*capture.Packet {
			return []*capture.Packet{
				tcp(at(0), "81.2.0.10:40000", "10.1.0.19:19", capture.TCPSyn, nil),
				tcp(at(time.Millisecond), "10.1.0.19:19", "81.2.0.10:40000", capture.TCPSyn|capture.TCPAck, nil),
			}
		},
	}
}

// TestAlertsCarryTunnel: every kind raised on tunnelled traffic says so,
// in the alert, its EVE (Suricata's "tunnel" object, and the kind and
// VNI in the incident) and its text line.
func TestAlertsCarryTunnel(t *testing.T) {
	for k, mk := range kindTraffic() {
		t.Run(k.String(), func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(via(vxlan42, 0, mk())...)
			h.flush()
			if len(h.out.alerts) == 0 {
				t.Fatal("no alert")
			}
			for i, a := range h.out.alerts {
				if a.Kind() != k {
					continue
				}
				if a.Tunnel != vxlan42 || a.Tenant != 0 {
					t.Errorf("alert %d: tunnel %+v tenant %d", i, a.Tunnel, a.Tenant)
				}
				line := h.out.lines[i]
				for _, want := range []string{
					`,"tunnel":{"src_ip":"203.0.113.1","src_port":51000,"dest_ip":"198.51.100.2","dest_port":4789,"proto":"UDP","depth":1},"incident":{`,
					`,"tunnel":{"kind":"vxlan","vni":42}`,
				} {
					if !strings.Contains(line, want) {
						t.Errorf("EVE lacks %s:\n%s", want, line)
					}
				}
				if strings.Contains(line, `"tenant"`) {
					t.Errorf("tenant 0 written: %s", line)
				}
				if text := string(a.AppendText(nil)); !strings.Contains(text, " via vxlan vni 42 203.0.113.1->198.51.100.2 ") {
					t.Errorf("text %q lacks the tunnel", text)
				}
			}
		})
	}
}

// TestAlertKeepsLatestTunnel: an incident's alerts name the tunnel of its
// latest packet, like its VLANs.
func TestAlertKeepsLatestTunnel(t *testing.T) {
	vni43 := vxlan42
	vni43.ID, vni43.InnerID, vni43.Src = 43, 43, netip.MustParseAddr("203.0.113.9")
	ps := reflected(base, 800, 8000, 12, "10.1.0.10")
	via(vxlan42, 0, ps[:4000])
	via(vni43, 0, ps[4000:])
	h := newHarness(t, homeConfig())
	h.feed(ps...)
	h.flush()
	h.expect("reflection/start/9000001 10.1.0.10", "reflection/end/9000001 10.1.0.10")
	if h.out.alerts[0].Tunnel != vxlan42 || h.out.alerts[1].Tunnel != vni43 {
		t.Errorf("start via %+v, end via %+v", h.out.alerts[0].Tunnel, h.out.alerts[1].Tunnel)
	}
	// And a plain packet last: no tunnel.
	h = newHarness(t, homeConfig())
	ps = reflected(base, 800, 8000, 12, "10.1.0.10")
	h.feed(via(vxlan42, 0, ps[:7999])...)
	h.feed(ps[7999])
	h.flush()
	if a := h.out.alerts[1]; a.Tunnel != (capture.Tunnel{}) || strings.Contains(h.out.lines[1], `"tunnel"`) {
		t.Errorf("end of plain traffic via %+v: %s", a.Tunnel, h.out.lines[1])
	}
}

// TestTunnelRendering renders each kind of tunnel in EVE and text.
func TestTunnelRendering(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 800, 4000, 12, "10.1.0.10")...)
	a := h.out.alerts[0]
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	o1, o2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tests := []struct {
		name     string
		tun      capture.Tunnel
		tenant   uint32
		outer    string // the top-level tunnel object, "" for none
		incident string // what the incident's tunnel object and tenant render
		text     string
	}{
		{"plain", capture.Tunnel{}, 0, "", "", " inbound id "},
		{"gre key over IPv6", capture.Tunnel{Depth: 1, Kind: capture.TunnelGRE, HasID: true, ID: 7,
			InnerKind: capture.TunnelGRE, InnerHasID: true, InnerID: 7, Src: v6a, Dst: v6b, Proto: 47},
			0, `{"src_ip":"2001:db8::1","dest_ip":"2001:db8::2","proto":"GRE","depth":1}`,
			`"tunnel":{"kind":"gre","key":7}`, " inbound via gre key 7 2001:db8::1->2001:db8::2 id "},
		{"gre without key", capture.Tunnel{Depth: 1, Kind: capture.TunnelGRE, InnerKind: capture.TunnelGRE,
			Src: o1, Dst: o2, Proto: 47},
			0, `{"src_ip":"192.0.2.1","dest_ip":"192.0.2.2","proto":"GRE","depth":1}`,
			`"tunnel":{"kind":"gre"}`, " via gre 192.0.2.1->192.0.2.2 id "},
		{"4in4", capture.Tunnel{Depth: 1, Kind: capture.TunnelIPIP, InnerKind: capture.TunnelIPIP, Src: o1, Dst: o2, Proto: 4},
			0, `{"src_ip":"192.0.2.1","dest_ip":"192.0.2.2","proto":"IPv4","depth":1}`,
			`"tunnel":{"kind":"ipip"}`, " via ipip 192.0.2.1->192.0.2.2 id "},
		{"6in4", capture.Tunnel{Depth: 1, Kind: capture.TunnelIPIP, InnerKind: capture.TunnelIPIP, Src: o1, Dst: o2, Proto: 41},
			0, `{"src_ip":"192.0.2.1","dest_ip":"192.0.2.2","proto":"IPv6","depth":1}`,
			`"tunnel":{"kind":"ipip"}`, " via ipip 192.0.2.1->192.0.2.2 id "},
		{"geneve", capture.Tunnel{Depth: 1, Kind: capture.TunnelGeneve, HasID: true, ID: 0xabcdef,
			InnerKind: capture.TunnelGeneve, InnerHasID: true, InnerID: 0xabcdef, Src: o1, Dst: o2, Proto: 17, SrcPort: 1, DstPort: 6081},
			9, `{"src_ip":"192.0.2.1","src_port":1,"dest_ip":"192.0.2.2","dest_port":6081,"proto":"UDP","depth":1}`,
			`"tenant":9,"tunnel":{"kind":"geneve","vni":11259375}`, " via geneve vni 11259375 192.0.2.1->192.0.2.2 tenant 9 id "},
		{"gtp-u in erspan III", capture.Tunnel{Depth: 2, Kind: capture.TunnelERSPAN3, HasID: true, ID: 5,
			InnerKind: capture.TunnelGTPU, InnerHasID: true, InnerID: 0x1234, Src: o1, Dst: o2, Proto: 47},
			0, `{"src_ip":"192.0.2.1","dest_ip":"192.0.2.2","proto":"GRE","depth":2}`,
			`"tunnel":{"kind":"erspan3","session_id":5,"inner":{"kind":"gtpu","teid":4660}}`,
			" via erspan3 session_id 5 > gtpu teid 4660 192.0.2.1->192.0.2.2 id "},
		{"mpls on the link", capture.Tunnel{Depth: 1, Kind: capture.TunnelMPLS, HasID: true, ID: 200,
			InnerKind: capture.TunnelMPLS, InnerHasID: true, InnerID: 200, Labels: [4]uint32{100, 200}, NumLabels: 2},
			0, "", `"tunnel":{"kind":"mpls","label":200,"labels":[100,200]}`, " via mpls label 200 labels 100/200 id "},
		{"vxlan in mpls in pppoe", capture.Tunnel{Depth: 3, Kind: capture.TunnelPPPoE, HasID: true, ID: 3,
			InnerKind: capture.TunnelVXLAN, InnerHasID: true, InnerID: 1, Src: o1, Dst: o2, Proto: 17, SrcPort: 2, DstPort: 4789,
			Labels: [4]uint32{16}, NumLabels: 1},
			0, `{"src_ip":"192.0.2.1","src_port":2,"dest_ip":"192.0.2.2","dest_port":4789,"proto":"UDP","depth":3}`,
			`"tunnel":{"kind":"pppoe","session_id":3,"labels":[16],"inner":{"kind":"vxlan","vni":1}}`,
			" via pppoe session_id 3 labels 16 > vxlan vni 1 192.0.2.1->192.0.2.2 id "},
		{"nsh, erspan I", capture.Tunnel{Depth: 2, Kind: capture.TunnelERSPAN1, InnerKind: capture.TunnelNSH, InnerHasID: true, InnerID: 77,
			Src: v6a, Dst: v6b, Proto: 47},
			0, `{"src_ip":"2001:db8::1","dest_ip":"2001:db8::2","proto":"GRE","depth":2}`,
			`"tunnel":{"kind":"erspan1","inner":{"kind":"nsh","spi":77}}`, " via erspan1 > nsh spi 77 2001:db8::1->2001:db8::2 id "},
		{"tenant, no tunnel", capture.Tunnel{}, 4000000000, "", `"tenant":4000000000`, " inbound tenant 4000000000 id "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.Tunnel, a.Tenant = tt.tun, tt.tenant
			eve := string(a.AppendEVE(nil))
			outer := `"alert":{`
			if tt.outer != "" {
				outer = `},"tunnel":` + tt.outer + `,"incident":{`
			}
			if !strings.Contains(eve, outer) {
				t.Errorf("EVE lacks %s:\n%s", outer, eve)
			}
			if tt.outer == "" && strings.Contains(eve, `"depth"`) {
				t.Errorf("EVE has a tunnel object:\n%s", eve)
			}
			incident := `"direction":"inbound","victim"`
			if tt.incident != "" {
				incident = `"direction":"inbound",` + tt.incident + `,"victim"`
			}
			if !strings.Contains(eve, incident) {
				t.Errorf("EVE lacks %s:\n%s", incident, eve)
			}
			if text := string(a.AppendText(nil)); !strings.Contains(text, tt.text) {
				t.Errorf("text %q lacks %q", text, tt.text)
			}
		})
	}
}

// TestTenantsStayApart: the same addresses in two tenants are two
// incidents of every kind, with ids of their own, each alert naming its
// tenant; without tenants (0), the same traffic is one incident.
func TestTenantsStayApart(t *testing.T) {
	for k, mk := range kindTraffic() {
		t.Run(k.String(), func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(mergeByTime(via(vxlan42, 1, mk()), via(vxlan42, 2, mk()))...)
			h.flush()
			ids := map[uint32]string{}
			for i, a := range h.out.alerts {
				if a.Kind() != k || a.Phase() != PhaseStart {
					continue
				}
				if old, ok := ids[a.Tenant]; ok {
					t.Errorf("tenant %d: two incidents %s and %s", a.Tenant, old, a.Incident.ID)
				}
				ids[a.Tenant] = a.Incident.ID
				suffix := fmt.Sprintf(" tenant %d", a.Tenant)
				if !strings.HasSuffix(a.Key(), suffix) {
					t.Errorf("key %q lacks %q", a.Key(), suffix)
				}
				if id := incidentID(a.Kind().String(), a.Key(), a.Incident.FirstSeen); id != a.Incident.ID {
					t.Errorf("id %s, recomputed from %q %s", a.Incident.ID, a.Key(), id)
				}
				if want := fmt.Sprintf(`"tenant":%d,"tunnel":{"kind":"vxlan"`, a.Tenant); !strings.Contains(h.out.lines[i], want) {
					t.Errorf("EVE lacks %s:\n%s", want, h.out.lines[i])
				}
				if text := string(a.AppendText(nil)); !strings.Contains(text, suffix+" id ") {
					t.Errorf("text %q lacks %q", text, suffix)
				}
			}
			if len(ids) != 2 || ids[1] == "" || ids[2] == "" || ids[1] == ids[2] {
				t.Errorf("incidents by tenant %v, want one each in 1 and 2", ids)
			}

			// The same traffic without tenants: one incident, keyed and
			// named as before tenants existed.
			h = newHarness(t, homeConfig())
			h.feed(mergeByTime(mk(), mk())...)
			h.flush()
			starts := 0
			for _, a := range h.out.alerts {
				if a.Kind() == k && a.Phase() == PhaseStart {
					starts++
					if strings.Contains(a.Key(), "tenant") || a.Tenant != 0 {
						t.Errorf("tenant 0: key %q tenant %d", a.Key(), a.Tenant)
					}
				}
			}
			if starts != 1 {
				t.Errorf("%d incidents without tenants, want 1", starts)
			}
		})
	}
}

// TestTenantsStayApartInPrefixes: a carpet bombing of one /24 in two
// tenants, each too thin to cross the threshold, is no incident: the
// prefix's traffic is counted per tenant.
func TestTenantsStayApartInPrefixes(t *testing.T) {
	carpet := func(tenant uint32) []*capture.Packet {
		return via(vxlan42, tenant, every(base, 35, 700, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%3), fmt.Sprintf("10.1.0.%d:40000", 1+i%30), make([]byte, 100))
		}))
	}
	h := newHarness(t, homeConfig())
	h.feed(mergeByTime(carpet(1), carpet(2))...)
	h.flush()
	h.expect()
	// One tenant at twice the rate is one.
	h = newHarness(t, homeConfig())
	h.feed(mergeByTime(carpet(1), carpet(1))...)
	h.flush()
	h.expect("reflection/start/9000003 10.1.0.0/24 tenant 1", "reflection/end/9000003 10.1.0.0/24 tenant 1")
}

// TestFlowsKeyOnTenant: one 5-tuple in two tenants is two flows, on
// probation and once promoted.
func TestFlowsKeyOnTenant(t *testing.T) {
	ft, _ := NewFlows(FlowConfig{MaxFlows: 10, Ports: NewPortSet(7)})
	req := udpPacket("198.51.100.20", "192.0.2.7", 40000, 7, 0, 100)
	req.Tenant = 1
	rep := reply(req, time.Millisecond)
	ft.Update(&req)
	if f, dir := ft.Update(&rep); dir != FromResp || f.Key.Tenant != 1 {
		t.Fatalf("tenant 1 reply: dir %v flow %+v", dir, f)
	}
	// Tenant 2's packets, the same 5-tuple: a flow of their own, its
	// originator the first packet's sender, here the other endpoint.
	rep.Tenant, rep.Timestamp = 2, rep.Timestamp.Add(time.Millisecond)
	if f, dir := ft.Update(&rep); dir != FromOrig || f.Packets != [2]uint64{1, 0} || f.Key.Tenant != 2 {
		t.Fatalf("tenant 2's first packet: dir %v flow %+v", dir, f)
	}
	req.Tenant, req.Timestamp = 2, rep.Timestamp.Add(time.Millisecond)
	if f, dir := ft.Update(&req); dir != FromResp || f.Packets != [2]uint64{1, 1} || f.Key.Tenant != 2 {
		t.Fatalf("tenant 2's reply: dir %v flow %+v", dir, f)
	}
	if s := ft.Stats(); s.Created != 2 || s.Promoted != 2 || s.Active != 2 {
		t.Errorf("stats %+v", s)
	}
	if k, _ := MakeFlowKey(&req); k.Tenant != 2 {
		t.Errorf("MakeFlowKey %+v", k)
	}
}

// vxlanFrame returns an Ethernet frame that carries, in VXLAN with the
// VNI vni, an Ethernet frame with IPv4 UDP from src to dst ("a.b.c.d:port")
// and the payload.
func vxlanFrame(vni uint32, src, dst string, payload []byte) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	eth := func(b []byte) []byte {
		b = append(b, 0x02, 0, 0, 0, 0, 2) // destination MAC
		b = append(b, 0x02, 0, 0, 0, 0, 1) // source MAC
		return append(b, 0x08, 0x00)       // IPv4
	}
	ipUDP := func(b []byte, s, d netip.AddrPort, n int) []byte {
		b = append(b, 0x45, 0) // version 4, IHL 5; DSCP
		b = binary.BigEndian.AppendUint16(b, uint16(20+8+n))
		b = append(b, 0, 1, 0, 0, 64, 17, 0, 0) // id 1, no fragment, TTL 64, UDP, checksum 0
		b = append(b, s.Addr().AsSlice()...)
		b = append(b, d.Addr().AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, s.Port())
		b = binary.BigEndian.AppendUint16(b, d.Port())
		b = binary.BigEndian.AppendUint16(b, uint16(8+n))
		return append(b, 0, 0) // checksum 0: none
	}
	inner := ipUDP(eth(nil), s, d, len(payload))
	inner = append(inner, payload...)
	vx := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0} // I flag; VNI
	b := ipUDP(eth(nil), netip.MustParseAddrPort("203.0.113.1:51000"), netip.MustParseAddrPort("198.51.100.2:4789"), len(vx)+len(inner))
	return append(append(b, vx...), inner...)
}

// tenantWriter renders each alert into a reused buffer, as the outputs
// would, and notes the kinds each tenant started and any alert whose
// tunnel is not its tenant's VXLAN: nothing that allocates once warm.
type tenantWriter struct {
	buf    []byte
	starts map[uint32]map[Kind]bool
	wrong  int
}

func (w *tenantWriter) WriteAlert(a *Alert) {
	w.buf = a.AppendText(a.AppendEVE(w.buf[:0]))
	if a.Phase() == PhaseStart {
		if w.starts[a.Tenant] == nil {
			w.starts[a.Tenant] = map[Kind]bool{}
		}
		w.starts[a.Tenant][a.Kind()] = true
	}
	if a.Tunnel.Kind != capture.TunnelVXLAN || a.Tunnel.ID != a.Tenant {
		w.wrong++
	}
}

// TestTunnelledPathAllocatesNothing decodes real VXLAN frames of two
// tenants (the VNI), and runs them through the flow table and the Engine:
// a reflection, a loop and a sweep in each tenant. Nothing allocates per
// packet, and each tenant has its incidents.
func TestTunnelledPathAllocatesNothing(t *testing.T) {
	dec, err := capture.NewDecoderWith(capture.DecoderConfig{Tenant: capture.TenantVNI})
	if err != nil {
		t.Fatal(err)
	}
	out := &tenantWriter{starts: map[uint32]map[Kind]bool{}}
	cfg := homeConfig()
	e, err := New(cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	flows, _ := NewFlows(FlowConfig{MaxFlows: 10_000, Ports: cfg.FlowPorts()})
	var frames [][]byte
	for i := range 240 {
		vni := uint32(100 + i%2)
		payload := make([]byte, 64)
		var src, dst string
		switch j := i / 2; j % 4 {
		case 0, 1: // a reflection toward 10.1.0.10
			src, dst = fmt.Sprintf("45.33.0.%d:7", 1+j%12), "10.1.0.10:40000"
		case 2: // a loop
			src, dst = "10.1.0.19:19", "10.1.0.7:7"
			if j%8 == 6 {
				src, dst = dst, src
			}
		case 3: // an nmap sweep of 30 hosts
			src, dst, payload = "81.2.0.66:45000", fmt.Sprintf("10.1.0.%d:7", 1+j/4), []byte("\r\n\r\n")
		}
		frames = append(frames, vxlanFrame(vni, src, dst, payload))
	}
	w := &worker{t: t, dec: dec, ft: flows, eng: e}
	i := 0
	step := func() {
		w.frame(frames[i%len(frames)], base.Add(time.Duration(i)*time.Millisecond), layers.LinkTypeEthernet)
		i++
	}
	for range 20_000 {
		step()
	}
	if allocs := testing.AllocsPerRun(20_000, step); allocs != 0 {
		t.Errorf("%v allocations per tunnelled packet", allocs)
	}
	if p := &w.p; p.Tunnel.Kind != capture.TunnelVXLAN || p.Tenant == 0 {
		t.Fatalf("decoded %+v tenant %d", p.Tunnel, p.Tenant)
	}
	e.Flush(w.p.Timestamp)
	if out.wrong != 0 {
		t.Errorf("%d alerts not via their tenant's VXLAN", out.wrong)
	}
	want := map[Kind]bool{KindReflection: true, KindLoop: true, KindScan: true}
	for _, vni := range []uint32{100, 101} {
		if !maps.Equal(out.starts[vni], want) {
			t.Errorf("tenant %d started %v, want %v", vni, out.starts[vni], want)
		}
	}
	if len(out.starts) != 2 {
		t.Errorf("starts by tenant %v", out.starts)
	}
}

// TestTunnelCopy: what a track keeps of a tunnel gives it back whole:
// both address families, none, the largest identifiers and labels.
func TestTunnelCopy(t *testing.T) {
	for _, tun := range []capture.Tunnel{
		{},
		vxlan42,
		{Depth: 4, Kind: capture.TunnelERSPAN2, HasID: true, ID: 1023, InnerKind: capture.TunnelGTPU, InnerHasID: true, InnerID: 1<<32 - 1,
			Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("::ffff:192.0.2.1"), Proto: 47,
			Labels: [4]uint32{1<<20 - 1, 0, 16, 1<<20 - 2}, NumLabels: 4},
		{Depth: 1, Kind: capture.TunnelMPLS, HasID: true, ID: 1<<20 - 1, InnerKind: capture.TunnelMPLS, InnerHasID: true, InnerID: 1<<20 - 1,
			Labels: [4]uint32{3, 1<<20 - 1}, NumLabels: 2},
		{Depth: 2, Kind: capture.TunnelIPIP, InnerKind: capture.TunnelPPPoE, InnerHasID: true, InnerID: 65535,
			Src: netip.MustParseAddr("0.0.0.0"), Dst: netip.MustParseAddr("255.255.255.255"), Proto: 4},
	} {
		var c tunnelCopy
		c.set(&vxlan42) // overwritten whole
		c.set(&tun)
		if got := c.tunnel(); got != tun {
			t.Errorf("kept %+v\ngave %+v", tun, got)
		}
	}
}
