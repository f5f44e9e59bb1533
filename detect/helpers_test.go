package detect

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/gopacket/gopacket/layers"
)

// base is the packet time the unit tests start at.
var base = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns base plus d.
func at(d time.Duration) time.Time { return base.Add(d) }

// pkt builds a decoded packet as the capture package would: src and dst
// are "addr:port" ("[v6]:port"), Length counts Ethernet, IP, transport
// headers and payload.
func pkt(ts time.Time, proto uint8, src, dst string, payload []byte) *capture.Packet {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	hdr := 14 + 20
	if s.Addr().Is6() {
		hdr = 14 + 40
	}
	if proto == capture.ProtoTCP {
		hdr += 20
	} else {
		hdr += 8
	}
	return &capture.Packet{
		Timestamp: ts, Src: s.Addr(), Dst: d.Addr(), Proto: proto, TTL: 64,
		HasPorts: true, SrcPort: s.Port(), DstPort: d.Port(),
		Payload: payload, PayloadLen: len(payload), Length: hdr + len(payload),
	}
}

func udp(ts time.Time, src, dst string, payload []byte) *capture.Packet {
	return pkt(ts, capture.ProtoUDP, src, dst, payload)
}

func tcp(ts time.Time, src, dst string, flags uint8, payload []byte) *capture.Packet {
	p := pkt(ts, capture.ProtoTCP, src, dst, payload)
	p.TCPFlags = flags
	return p
}

// sink collects alerts as clones and EVE lines.
type sink struct {
	alerts []*Alert
	lines  []string
}

func (s *sink) WriteAlert(a *Alert) {
	s.alerts = append(s.alerts, a.Clone())
	s.lines = append(s.lines, string(a.AppendEVE(nil)))
}

// summary renders the alerts as "kind/phase/sid key" lines for compact
// assertions.
func (s *sink) summary() []string {
	var out []string
	for _, a := range s.alerts {
		out = append(out, fmt.Sprintf("%s/%s/%d %s", a.Kind(), a.Phase(), a.SignatureID(), a.Key()))
	}
	return out
}

// harness runs packets through a flow table and an Engine, as the sensor
// does.
type harness struct {
	t     testing.TB
	flows *Flows
	eng   *Engine
	out   *sink
	last  time.Time
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	out := &sink{}
	eng, err := New(cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	flows, err := NewFlows(FlowConfig{Ports: eng.FlowPorts()})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, flows: flows, eng: eng, out: out}
}

func (h *harness) feed(ps ...*capture.Packet) {
	for _, p := range ps {
		f, dir := h.flows.Update(p)
		h.eng.Packet(p, f, dir)
		h.last = p.Timestamp
	}
}

func (h *harness) flush() { h.eng.Flush(h.last) }

// worker runs frames through a sensor worker's path: the decoder, the
// flow table and the Engine, with one reused Packet, as allocation tests
// want.
type worker struct {
	t   testing.TB
	dec *capture.Decoder
	ft  *Flows
	eng *Engine
	p   capture.Packet
}

// frame decodes data, captured at ts on a link of type lt, and detects.
func (w *worker) frame(data []byte, ts time.Time, lt layers.LinkType) {
	f := capture.Frame{Data: data, Timestamp: ts, LinkType: lt, Length: len(data)}
	if r := w.dec.Decode(&f, &w.p); r != capture.DropNone {
		w.t.Fatalf("decode: %v", r)
	}
	fl, dir := w.ft.Update(&w.p)
	w.eng.Packet(&w.p, fl, dir)
}

// expectKind compares the summary of the alerts of one kind with want.
func (h *harness) expectKind(k Kind, want ...string) {
	h.t.Helper()
	var got []string
	for i, a := range h.out.alerts {
		if a.Kind() == k {
			got = append(got, h.out.summary()[i])
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		h.t.Fatalf("%s alerts:\n  got  %q\n  want %q", k, got, want)
	}
}

// expect compares the alert summary with want.
func (h *harness) expect(want ...string) {
	h.t.Helper()
	got := h.out.summary()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		h.t.Fatalf("alerts:\n  got  %q\n  want %q\nEVE:\n%s", got, want, strings.Join(h.out.lines, "\n"))
	}
}

// every returns count packets made by mk(i, time) spaced evenly at rate
// packets per second from start.
func every(start time.Time, rate float64, count int, mk func(i int, ts time.Time) *capture.Packet) []*capture.Packet {
	ps := make([]*capture.Packet, count)
	for i := range ps {
		ps[i] = mk(i, start.Add(time.Duration(float64(i)/rate*float64(time.Second))))
	}
	return ps
}

// v4 returns 10.a.b.c-style test addresses: ip("198.18.0.", i).
func ip(prefix string, i int) string { return fmt.Sprintf("%s%d", prefix, i) }

// builtin returns the Engine's detector of type D.
func builtin[D detector](e *Engine) D {
	for _, d := range e.detectors {
		if x, ok := d.(D); ok {
			return x
		}
	}
	panic(fmt.Sprintf("no %T in the engine", *new(D)))
}

// suppressedByKind returns the alerts held back by kind, of the built-in
// kinds.
func suppressedByKind(s Stats) [NumKinds]uint64 {
	var n [NumKinds]uint64
	for k := range n {
		n[k] = s.Kinds[k].Suppressed
	}
	return n
}
