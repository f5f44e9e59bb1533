package sinks_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// collect keeps the EVE of every alert, as the outputs render it.
type collect struct{ records []*sinks.Record }

func (c *collect) WriteAlert(a *detect.Alert) { c.records = append(c.records, sinks.NewRecord(a)) }

// kindsTraffic returns packets that raise every kind of incident, in time
// order, each in tunnel tun and tenant tenant.
func kindsTraffic(tun capture.Tunnel, tenant uint32, vlans ...uint16) []*capture.Packet {
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var ps []*capture.Packet
	add := func(ts time.Duration, proto uint8, src, dst string, flags uint8, payload []byte) {
		s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
		p := &capture.Packet{Timestamp: base.Add(ts), Src: s.Addr(), Dst: d.Addr(), Proto: proto, TTL: 64,
			HasPorts: true, SrcPort: s.Port(), DstPort: d.Port(), TCPFlags: flags,
			Payload: payload, PayloadLen: len(payload), Length: 42 + len(payload), Tunnel: tun, Tenant: tenant}
		p.NumVLANs = uint8(copy(p.VLANs[:], vlans))
		ps = append(ps, p)
	}
	ms := time.Millisecond
	for i := range 4000 { // a reflection, 800 pps from 12 reflectors
		add(time.Duration(i)*1250*time.Microsecond, capture.ProtoUDP, fmt.Sprintf("45.33.0.%d:7", 1+i%12), "198.51.100.10:40000", 0, make([]byte, 100))
	}
	for i := range 800 { // a loop, 40 pps
		a, b := "198.51.100.19:19", "198.51.100.7:7"
		if i%2 == 1 {
			a, b = b, a
		}
		add(10*time.Second+time.Duration(i)*25*ms, capture.ProtoUDP, a, b, 0, make([]byte, 64))
	}
	for i := range 1500 { // a spoofed flood from bogons, 150 pps
		add(40*time.Second+time.Duration(i)*20*ms/3, capture.ProtoUDP, []string{"127.0.0.1:9", "240.1.1.1:9"}[i%2], "198.51.100.80:7", 0, nil)
	}
	for i := range 30 { // an nmap sweep
		add(60*time.Second+time.Duration(i)*100*ms, capture.ProtoUDP, "81.2.0.66:45000", fmt.Sprintf("198.51.100.%d:7", 100+i), 0, []byte("\r\n\r\n"))
	}
	// An exposed chargen: SYN, SYN-ACK.
	add(70*time.Second, capture.ProtoTCP, "81.2.0.10:40000", "198.51.100.19:19", capture.TCPSyn, nil)
	add(70*time.Second+ms, capture.ProtoTCP, "198.51.100.19:19", "81.2.0.10:40000", capture.TCPSyn|capture.TCPAck, nil)
	return ps
}

// TestEVEMatchesSuricataSchema runs traffic of every kind through the
// detection engine, plain and in each kind of tunnel, and checks every
// alert's EVE against Suricata's schema, less our "incident" object: what
// a consumer of Suricata's eve.json validates takes it. The tunnel object
// is Suricata's.
func TestEVEMatchesSuricataSchema(t *testing.T) {
	schema := sinkstest.LoadEVESchema(t)
	o1, o2 := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("198.51.100.2")
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	variants := []struct {
		name   string
		tun    capture.Tunnel
		tenant uint32
		vlans  []uint16
	}{
		{"plain", capture.Tunnel{}, 0, []uint16{10, 20}},
		{"vxlan, tenant", capture.Tunnel{Depth: 1, Kind: capture.TunnelVXLAN, HasID: true, ID: 42, InnerKind: capture.TunnelVXLAN,
			InnerHasID: true, InnerID: 42, Src: o1, Dst: o2, Proto: capture.ProtoUDP, SrcPort: 51000, DstPort: 4789}, 42, nil},
		{"gre over IPv6", capture.Tunnel{Depth: 1, Kind: capture.TunnelGRE, HasID: true, ID: 7, InnerKind: capture.TunnelGRE,
			InnerHasID: true, InnerID: 7, Src: v6a, Dst: v6b, Proto: 47}, 7, []uint16{5}},
		{"gtp-u in erspan III", capture.Tunnel{Depth: 2, Kind: capture.TunnelERSPAN3, HasID: true, ID: 5,
			InnerKind: capture.TunnelGTPU, InnerHasID: true, InnerID: 0x1234, Src: o1, Dst: o2, Proto: 47}, 0, nil},
		{"ipip", capture.Tunnel{Depth: 1, Kind: capture.TunnelIPIP, InnerKind: capture.TunnelIPIP, Src: o1, Dst: o2, Proto: 4}, 0, nil},
		{"mpls on the link", capture.Tunnel{Depth: 1, Kind: capture.TunnelMPLS, HasID: true, ID: 200, InnerKind: capture.TunnelMPLS,
			InnerHasID: true, InnerID: 200, Labels: [4]uint32{100, 200}, NumLabels: 2}, 200, nil},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out := &collect{}
			cfg := detect.DefaultConfig()
			cfg.HomeNet = []string{"198.51.100.0/24"}
			cfg.SensorName = "sensor-1"
			eng, err := detect.New(cfg, out)
			if err != nil {
				t.Fatal(err)
			}
			flows, err := detect.NewFlows(detect.FlowConfig{Ports: eng.FlowPorts()})
			if err != nil {
				t.Fatal(err)
			}
			ps := kindsTraffic(v.tun, v.tenant, v.vlans...)
			for _, p := range ps {
				f, dir := flows.Update(p)
				eng.Packet(p, f, dir)
			}
			eng.Flush(ps[len(ps)-1].Timestamp)
			kinds := map[detect.Kind]bool{}
			for _, r := range out.records {
				kinds[r.Alert().Kind()] = true
				if err := schema.Validate(r.EVE, "incident"); err != nil {
					t.Errorf("%s alert:\n%v\n%s", r.Alert().Kind(), err, r.EVE)
				}
				if outer := v.tun.Src.IsValid(); strings.Contains(string(r.EVE), `},"tunnel":{"src_ip"`) != outer {
					t.Errorf("a tunnel object should be there: %v\n%s", outer, r.EVE)
				}
			}
			if len(kinds) != detect.NumKinds {
				t.Errorf("kinds raised %v, want all %d", kinds, detect.NumKinds)
			}
		})
	}
}

// TestEVESchemaRejects: the schema check fails what Suricata's schema
// forbids, so that the test above can fail.
func TestEVESchemaRejects(t *testing.T) {
	schema := sinkstest.LoadEVESchema(t)
	good := `{"timestamp":"2024-05-01T12:00:07.250000+0000","event_type":"alert","src_ip":"192.0.2.7","src_port":7,` +
		`"dest_ip":"192.0.2.19","proto":"UDP","vlan":[10],"alert":{"action":"allowed","gid":1,"signature_id":9000004,"rev":1,` +
		`"signature":"x","category":"y","severity":2,"metadata":{"mitre_tactic_id":["TA0040"]}},` +
		`"tunnel":{"src_ip":"203.0.113.1","src_port":51000,"dest_ip":"198.51.100.2","dest_port":4789,"proto":"UDP","depth":1},"incident":{"kind":"loop"}}`
	if err := schema.Validate([]byte(good), "incident"); err != nil {
		t.Fatalf("a valid alert fails: %v", err)
	}
	for _, bad := range []struct{ from, to string }{
		{`"depth":1}`, `"depth":1,"kind":"vxlan"}`},   // the tunnel object has no kind
		{`"depth":1}`, `"depth":1.5}`},                // an integer
		{`"src_port":7`, `"src_port":"7"`},            // an integer
		{`"vlan":[10]`, `"vlan":[]`},                  // at least one item
		{`"event_type":"alert",`, ``},                 // required
		{`"proto":"UDP"`, `"proto":"UDP","tenant":1`}, // no such member
		{`"timestamp":"2024-05-01T12:00:07.250000+0000"`, `"timestamp":"2024-05-01 12:00:07"`}, // its pattern
	} {
		doc := strings.Replace(good, bad.from, bad.to, 1)
		if err := schema.Validate([]byte(doc), "incident"); err == nil {
			t.Errorf("accepted %s", doc)
		}
	}
	if err := schema.Validate([]byte(good)); err == nil || !strings.Contains(err.Error(), "$.incident: not in the schema") {
		t.Errorf("our incident object taken for Suricata's: %v", err)
	}
}
