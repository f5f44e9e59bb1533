package detect

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/gopacket/gopacket/layers"
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
	ft, err := NewFlows(FlowConfig{MaxFlows: 10, Ports: NewPortSet(7)})
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
	ft, _ := NewFlows(FlowConfig{MaxFlows: 10, Ports: NewPortSet(7)})
	p := udpPacket("198.51.100.20", "192.0.2.7", 40000, 7, 0, 100)
	ft.Update(&p)
	// UDP idles out after 60 s of packet time: the next packet starts a
	// new flow whose originator is the new sender.
	rep := udpPacket("192.0.2.7", "198.51.100.20", 7, 40000, 61*time.Second, 60)
	f, dir := ft.Update(&rep)
	if dir != FromOrig || f.Packets != [2]uint64{1, 0} || !f.FirstSeen.Equal(rep.Timestamp) {
		t.Fatalf("after idle: dir %v flow %+v", dir, f)
	}
	// A TCP flow lives 300 s, on probation and once it saw both ways.
	syn := udpPacket("198.51.100.20", "192.0.2.7", 40001, 7, 0, 60)
	syn.Proto = capture.ProtoTCP
	ft.Update(&syn)
	syn.Timestamp = t0.Add(299 * time.Second)
	if f, _ := ft.Update(&syn); f.Packets[FromOrig] != 2 {
		t.Fatalf("TCP flow expired early: %+v", f)
	}
	ack := syn
	ack.Src, ack.Dst, ack.SrcPort, ack.DstPort = syn.Dst, syn.Src, syn.DstPort, syn.SrcPort
	ack.Timestamp = t0.Add(598 * time.Second)
	if f, dir := ft.Update(&ack); dir != FromResp || f.Packets != [2]uint64{2, 1} {
		t.Fatalf("TCP reply: dir %v flow %+v", dir, f)
	}
	// Two-way flows idle past their timeout are drained as packet time
	// advances, without another packet of theirs.
	late := udpPacket("198.51.100.30", "192.0.2.9", 1000, 7, 20*time.Minute, 60)
	for range 3 {
		ft.Update(&late)
	}
	if s := ft.Stats(); s.Active != 2 || s.OneWay != 2 || s.Promoted != 1 || s.Expired != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// reply returns p's answer, at after past p.
func reply(p capture.Packet, after time.Duration) capture.Packet {
	r := p
	r.Src, r.Dst, r.SrcPort, r.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
	r.Timestamp = p.Timestamp.Add(after)
	return r
}

func TestFlowPromotionCarriesCounts(t *testing.T) {
	ft, _ := NewFlows(FlowConfig{MaxFlows: 10, Ports: NewPortSet(7)})
	req := udpPacket("198.51.100.20", "192.0.2.7", 40000, 7, 0, 100)
	for i := range 3 {
		req.Timestamp = t0.Add(time.Duration(i) * time.Second)
		if f, dir := ft.Update(&req); dir != FromOrig || f.Packets[FromOrig] != uint64(i+1) {
			t.Fatalf("request %d: dir %v flow %+v", i, dir, f)
		}
	}
	if s := ft.Stats(); s.OneWay != 1 || s.Active != 1 {
		t.Fatalf("before the reply: %+v", ft.Stats())
	}
	rep := reply(req, time.Second)
	rep.Length = 60
	f, dir := ft.Update(&rep)
	if dir != FromResp || f.Packets != [2]uint64{3, 1} || f.Bytes != [2]uint64{300, 60} ||
		!f.FirstSeen.Equal(t0) || !f.LastSeen.Equal(rep.Timestamp) || f.Orig != req.SrcAddrPort() {
		t.Fatalf("promoted flow %+v", f)
	}
	// From now on the flow lives in the LRU, in both directions.
	req.Timestamp = rep.Timestamp.Add(time.Second)
	if g, dir := ft.Update(&req); g != f || dir != FromOrig || g.Packets != [2]uint64{4, 1} {
		t.Fatalf("after promotion: dir %v flow %+v", dir, g)
	}
	if s := ft.Stats(); s.Active != 1 || s.OneWay != 0 || s.Created != 1 || s.Promoted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFlowEviction(t *testing.T) {
	ft, _ := NewFlows(FlowConfig{MaxFlows: 100, Ports: NewPortSet(7)})
	// Conversations: the LRU keeps the latest 100.
	for i := range 1000 {
		p := udpPacket("198.51.100.1", "192.0.2.7", uint16(1024+i), 7, time.Duration(i)*time.Millisecond, 60)
		ft.Update(&p)
		r := reply(p, time.Microsecond)
		ft.Update(&r)
	}
	if s := ft.Stats(); s.Active != 100 || s.OneWay != 0 || s.Created != 1000 || s.Promoted != 1000 || s.Evicted != 900 {
		t.Fatalf("stats %+v", s)
	}
	// One-way flows stay on probation, which is bounded apart: at most
	// probationWays per set, the oldest forgotten first, the LRU untouched.
	for i := range 1000 {
		p := udpPacket("198.51.100.2", "192.0.2.7", uint16(1024+i), 7, time.Second+time.Duration(i)*time.Millisecond, 60)
		ft.Update(&p)
	}
	s := ft.Stats()
	if s.Active-s.OneWay != 100 || s.OneWay > 64 || s.OneWay < 32 || s.Forgotten != 1000-uint64(s.OneWay) || s.Evicted != 900 {
		t.Fatalf("stats %+v", s)
	}
	// The latest one-way flow is still there, with its count.
	p := udpPacket("198.51.100.2", "192.0.2.7", uint16(1024+999), 7, 2*time.Second, 60)
	if f, _ := ft.Update(&p); f.Packets[FromOrig] != 2 {
		t.Fatalf("latest one-way flow forgotten: %+v", f)
	}
}

// fromNth makes p the i-th packet of a random-source flood: from the i-th
// address, i µs in.
func fromNth(p *capture.Packet, i int) {
	p.Src = netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
	p.Timestamp = t0.Add(time.Duration(i) * time.Microsecond)
}

// TestFlowRandomSourceFlood sends a million packets, each from a new
// source, to an echo server: they never reach the LRU, the table stays
// within its fixed size, and no packet allocates.
func TestFlowRandomSourceFlood(t *testing.T) {
	ft, _ := NewFlows(FlowConfig{Ports: NewPortSet(7)})
	p := udpPacket("198.51.100.1", "192.0.2.7", 1024, 7, 0, 60)
	i := 0
	step := func() {
		i++
		fromNth(&p, i)
		if f, dir := ft.Update(&p); f == nil || dir != FromOrig || f.Packets != [2]uint64{1, 0} {
			t.Fatalf("packet %d: dir %v flow %+v", i, dir, f)
		}
	}
	if allocs := testing.AllocsPerRun(1_000_000, step); allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
	s := ft.Stats()
	if s.Active != s.OneWay || s.OneWay > len(ft.probe.sets)*probationWays || s.Created != uint64(i) ||
		s.Forgotten != uint64(i-s.OneWay) || s.Promoted != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Probation holds 16384 flows whatever the flood, and uses all of
	// them: a set forgets only when its ways are all taken.
	if s.OneWay != 1<<14 {
		t.Errorf("%d flows on probation", s.OneWay)
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
	ft, _ := NewFlows(FlowConfig{MaxFlows: 1000, Ports: NewPortSet(7, 19)})
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

// BenchmarkFlowUpdate updates 4096 conversations in turn, each packet a
// request or its reply.
func BenchmarkFlowUpdate(b *testing.B) {
	ft, _ := NewFlows(FlowConfig{MaxFlows: 1 << 16, Ports: NewPortSet(7)})
	pkts := make([]capture.Packet, 8192)
	for i := range 4096 {
		pkts[2*i] = udpPacket("198.51.100.1", "192.0.2.7", uint16(1024+i), 7, 0, 60)
		pkts[2*i+1] = reply(pkts[2*i], 0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := &pkts[i&8191]
		p.Timestamp = t0.Add(time.Duration(i) * time.Microsecond)
		ft.Update(p)
		i++
	}
}

// BenchmarkFlowUpdateFlood updates a flow table with packets that each
// come from a new source.
func BenchmarkFlowUpdateFlood(b *testing.B) {
	ft, _ := NewFlows(FlowConfig{Ports: NewPortSet(7)})
	p := udpPacket("198.51.100.1", "192.0.2.7", 1024, 7, 0, 60)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		p.Src = netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
		p.Timestamp = t0.Add(time.Duration(i) * time.Microsecond)
		ft.Update(&p)
	}
}

// TestFloodAllocatesNothing runs a worker's whole path, decode, flows and
// detection, on a random-source flood into an echo server: every packet a
// new source, a new flow, a new forged "victim" and "scanner" for the
// tables keyed on attacker-controlled addresses. Past the first packets
// (the new keys the admission sketch lets in outright), nothing allocates.
func TestFloodAllocatesNothing(t *testing.T) {
	// IPv4 UDP x.x.x.x:40000 -> 198.51.100.77:7, 16 bytes, raw IP.
	frame := []byte{0x45, 0, 0, 44, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 198, 51, 100, 77,
		0x9c, 0x40, 0, 7, 0, 24, 0, 0, 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X'}
	cfg := DefaultConfig()
	eng, err := New(cfg, &countingWriter{})
	if err != nil {
		t.Fatal(err)
	}
	ft, _ := NewFlows(FlowConfig{Ports: cfg.FlowPorts()})
	w := &worker{t: t, dec: capture.NewDecoder(), ft: ft, eng: eng}
	i := uint32(0)
	step := func() {
		i++
		x := i*2654435761 | 1<<24 // distinct, scattered, never 0.x.x.x
		frame[12], frame[13], frame[14], frame[15] = byte(x>>24), byte(x>>16), byte(x>>8), byte(x)
		w.frame(frame, t0.Add(time.Duration(i)*time.Microsecond), layers.LinkTypeRaw)
	}
	for range 2000 {
		step()
	}
	if allocs := testing.AllocsPerRun(200_000, step); allocs != 0 {
		t.Errorf("%v allocations per flood packet", allocs)
	}
	if s := ft.Stats(); s.Promoted != 0 || s.OneWay == 0 {
		t.Errorf("flows %+v", s)
	}
}

// TestFlowTwoWayFloodAllocatesNothing floods a full flow table with forged
// conversations, a request and its reply on new addresses each: every
// reply promotes a flow and evicts the oldest, and nothing allocates.
func TestFlowTwoWayFloodAllocatesNothing(t *testing.T) {
	ft, _ := NewFlows(FlowConfig{MaxFlows: 10_000, Ports: NewPortSet(7)})
	p := udpPacket("198.51.100.1", "192.0.2.7", 1024, 7, 0, 60)
	i := 0
	step := func() {
		i++
		fromNth(&p, i)
		ft.Update(&p)
		r := reply(p, time.Microsecond)
		if f, dir := ft.Update(&r); dir != FromResp || f.Packets != [2]uint64{1, 1} || f.Orig != p.SrcAddrPort() {
			t.Fatalf("flow %d: dir %v %+v", i, dir, f)
		}
	}
	for range 20_000 {
		step()
	}
	if allocs := testing.AllocsPerRun(100_000, step); allocs != 0 {
		t.Errorf("%v allocations per conversation", allocs)
	}
	if s := ft.Stats(); s.Active != 10_000 || s.Evicted != uint64(i-10_000) {
		t.Errorf("stats %+v", s)
	}
}

// BenchmarkFlowUpdateTwoWayFlood updates a full flow table with forged
// conversations: a request and its reply on new addresses, so that every
// reply promotes a flow and evicts the oldest.
func BenchmarkFlowUpdateTwoWayFlood(b *testing.B) {
	ft, _ := NewFlows(FlowConfig{MaxFlows: 1 << 16, Ports: NewPortSet(7)})
	p := udpPacket("198.51.100.1", "192.0.2.7", 1024, 7, 0, 60)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if i&1 == 1 {
			fromNth(&p, i)
			ft.Update(&p)
		} else {
			r := reply(p, time.Microsecond)
			ft.Update(&r)
		}
	}
}

// TestFlowKeyOrder: the flow table's compact key orders a packet's
// endpoints as MakeFlowKey does, whatever the addresses (of one family, as
// in an IP header): IPv4, IPv6, IPv4-mapped IPv6, equal addresses on
// either port, in any tenant.
func TestFlowKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	addr := func(family int) netip.Addr {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.IntN(3)) // few values: many equal words
		}
		switch family {
		case 0:
			return netip.AddrFrom4([4]byte(b[12:]))
		case 1:
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom16(netip.AddrFrom4([4]byte(b[12:])).As16()) // IPv4-mapped
	}
	for range 100_000 {
		p := udpPacket("192.0.2.1", "192.0.2.2", uint16(rng.IntN(3)), uint16(rng.IntN(3)), 0, 60)
		family := rng.IntN(3)
		p.Src, p.Dst, p.Tenant = addr(family), addr(family), rng.Uint32()
		if rng.IntN(4) == 0 {
			p.Dst = p.Src
		}
		var k flowKey
		fromLo := makeKey(&p, &k)
		want, wantLo := MakeFlowKey(&p)
		if k.FlowKey() != want || fromLo != wantLo {
			t.Fatalf("%v:%d -> %v:%d: key %+v from lo %v, MakeFlowKey %+v %v", p.Src, p.SrcPort, p.Dst, p.DstPort, k.FlowKey(), fromLo, want, wantLo)
		}
	}
}
