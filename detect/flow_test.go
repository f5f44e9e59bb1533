package detect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

var t0 = time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)

func udpPacket(src, dst string, sport, dport uint16, at time.Duration, length int) capture.Packet {
	return capture.Packet{
		Timestamp: t0.Add(at),
		Src:       netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Proto: capture.ProtoUDP, HasPorts: true, SrcPort: sport, DstPort: dport, Length: length,
	}
}

func TestFlowDirectionsAndCounters(t *testing.T) {
	ft, err := NewLRUFlows(FlowConfig{MaxFlows: 10, Ports: NewPortSet(7)})
	if err != nil {
		t.Fatal(err)
	}
	req := udpPacket("198.51.100.20", "192.0.2.7", 40000, 7, 0, 100)
	rep := udpPacket("192.0.2.7", "198.51.100.20", 7, 40000, time.Second, 60)
	f, dir := ft.Update(&req)
	if f == nil || dir != FromOrig || f.Orig != req.SrcAddrPort() {
		t.Fatalf("first packet: flow %+v dir %v", f, dir)
	}
	f, dir = ft.Update(&rep)
	if dir != FromResp {
		t.Fatalf("reply direction %v", dir)
	}
	if f.Packets != [2]uint64{1, 1} || f.Bytes != [2]uint64{100, 60} ||
		!f.FirstSeen.Equal(t0) || !f.LastSeen.Equal(t0.Add(time.Second)) {
		t.Fatalf("flow %+v", f)
	}
	other := udpPacket("198.51.100.20", "192.0.2.8", 40000, 80, 0, 100)
	if f, _ := ft.Update(&other); f != nil {
		t.Fatalf("tracked a flow on no service port: %+v", f)
	}
	if s := ft.Stats(); s.Active != 1 || s.Created != 1 || s.Untracked != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFlowIdleExpiry(t *testing.T) {
	ft, _ := NewLRUFlows(FlowConfig{MaxFlows: 10, Ports: NewPortSet(7)})
	p := udpPacket("198.51.100.20", "192.0.2.7", 40000, 7, 0, 100)
	ft.Update(&p)
	// UDP idles out after 60 s of packet time: the next packet starts a
	// new flow whose originator is the new sender.
	rep := udpPacket("192.0.2.7", "198.51.100.20", 7, 40000, 61*time.Second, 60)
	f, dir := ft.Update(&rep)
	if dir != FromOrig || f.Packets != [2]uint64{1, 0} || !f.FirstSeen.Equal(rep.Timestamp) {
		t.Fatalf("after idle: dir %v flow %+v", dir, f)
	}
	// A TCP flow lives 300 s.
	syn := udpPacket("198.51.100.20", "192.0.2.7", 40001, 7, 0, 60)
	syn.Proto = capture.ProtoTCP
	ft.Update(&syn)
	syn.Timestamp = t0.Add(299 * time.Second)
	if f, _ := ft.Update(&syn); f.Packets[FromOrig] != 2 {
		t.Fatalf("TCP flow expired early: %+v", f)
	}
	// Flows idle past their timeout are drained as packet time advances,
	// without another packet of theirs.
	late := udpPacket("198.51.100.30", "192.0.2.9", 1000, 7, 10*time.Minute, 60)
	for range 3 {
		ft.Update(&late)
	}
	if s := ft.Stats(); s.Active != 1 || s.Expired != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFlowEviction(t *testing.T) {
	ft, _ := NewLRUFlows(FlowConfig{MaxFlows: 100, Ports: NewPortSet(7)})
	for i := range 1000 {
		p := udpPacket("198.51.100.1", "192.0.2.7", uint16(1024+i), 7, time.Duration(i)*time.Millisecond, 60)
		ft.Update(&p)
	}
	if s := ft.Stats(); s.Active != 100 || s.Created != 1000 || s.Evicted != 900 {
		t.Fatalf("stats %+v", s)
	}
}

// TestDecodeAndFlowAllocateNothing checks the per-packet path of a worker in
// steady state: decoding a frame and accounting it to its flow.
func TestDecodeAndFlowAllocateNothing(t *testing.T) {
	frames := [][]byte{
		// IPv4 UDP 198.51.100.20:40000 -> 192.0.2.7:7, "ping" (raw IP).
		{0x45, 0, 0, 0x20, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 198, 51, 100, 20, 192, 0, 2, 7,
			0x9c, 0x40, 0, 7, 0, 12, 0, 0, 'p', 'i', 'n', 'g'},
		// The reply.
		{0x45, 0, 0, 0x20, 0x12, 0x35, 0, 0, 64, 17, 0, 0, 192, 0, 2, 7, 198, 51, 100, 20,
			0, 7, 0x9c, 0x40, 0, 12, 0, 0, 'p', 'i', 'n', 'g'},
		// Untracked: UDP to port 53.
		{0x45, 0, 0, 0x20, 0x12, 0x36, 0, 0, 64, 17, 0, 0, 198, 51, 100, 20, 192, 0, 2, 53,
			0x9c, 0x40, 0, 53, 0, 12, 0, 0, 'p', 'i', 'n', 'g'},
	}
	dec := capture.NewDecoder()
	ft, _ := NewLRUFlows(FlowConfig{MaxFlows: 1000, Ports: NewPortSet(7, 19)})
	var p capture.Packet
	ts := t0
	step := func() {
		for _, data := range frames {
			ts = ts.Add(time.Millisecond)
			f := capture.Frame{Data: data, Timestamp: ts, LinkType: 101, Length: len(data)}
			if dec.Decode(&f, &p) != capture.DropNone {
				t.Fatal("decode failed")
			}
			ft.Update(&p)
		}
	}
	step()
	if allocs := testing.AllocsPerRun(1000, step); allocs != 0 {
		t.Fatalf("decode + flow update allocates %.1f times per packet triple, want 0", allocs)
	}
}

func BenchmarkFlowUpdate(b *testing.B) {
	ft, _ := NewLRUFlows(FlowConfig{MaxFlows: 1 << 16, Ports: NewPortSet(7)})
	pkts := make([]capture.Packet, 4096)
	for i := range pkts {
		pkts[i] = udpPacket("198.51.100.1", "192.0.2.7", uint16(1024+i), 7, 0, 60)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := &pkts[i&4095]
		p.Timestamp = t0.Add(time.Duration(i) * time.Microsecond)
		ft.Update(p)
		i++
	}
}
