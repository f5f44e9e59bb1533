package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

func TestRateLimit(t *testing.T) {
	// 30 victims hit at once with a limit of 10 alerts a second: 10 starts
	// in the first second, the others retried in the next seconds; at most
	// one start per incident.
	cfg := homeConfig()
	cfg.MaxAlertsPerSecond = 10
	h := newHarness(t, cfg)
	h.feed(every(base, 3000, 30000, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%7), fmt.Sprintf("10.1.0.%d:4000", 1+i%30), nil)
	})...)
	h.flush()
	perSecond := map[int64]int{}
	starts, ends := map[string]int{}, map[string]int{}
	for _, a := range h.out.alerts {
		switch a.Phase() {
		case PhaseStart:
			perSecond[a.Time.Unix()]++
			starts[a.Incident.ID]++
		case PhaseEnd:
			ends[a.Incident.ID]++
		}
	}
	for s, n := range perSecond {
		if n > 10 {
			t.Errorf("%d starts in second %d", n, s)
		}
	}
	if len(starts) != 30 {
		t.Errorf("%d incidents announced, want 30", len(starts))
	}
	for id, n := range starts {
		if n != 1 || ends[id] != 1 {
			t.Errorf("incident %s: %d starts, %d ends", id, n, ends[id])
		}
	}
	st := h.eng.Stats()
	if k := st.Kinds[KindReflection]; st.Suppressed < 20 || k.Incidents != 30 || k.Phases[PhaseStart] != 30 {
		t.Errorf("stats: suppressed %d, reflection %+v", st.Suppressed, k)
	}
}

// TestRateLimitAtTimeZero: a kind alone takes the whole limit also when
// the capture's clock starts at the Unix epoch (a device without a clock).
func TestRateLimitAtTimeZero(t *testing.T) {
	cfg := homeConfig()
	cfg.MaxAlertsPerSecond = 10
	h := newHarness(t, cfg)
	h.feed(every(time.Unix(0, 0).UTC(), 9000, 9000, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%7), fmt.Sprintf("10.1.0.%d:4000", 1+i%30), nil)
	})...)
	starts := 0
	for _, a := range h.out.alerts {
		if a.Phase() == PhaseStart && a.Time.Unix() == 0 {
			starts++
		}
	}
	if starts != 10 {
		t.Errorf("%d starts in the first second, want the limit's 10", starts)
	}
}

// TestRateLimitFindings: one-shot findings are held to the limit too, the
// second time a key raises one as much as the first.
func TestRateLimitFindings(t *testing.T) {
	cfg := homeConfig()
	cfg.MaxAlertsPerSecond = 10
	cfg.Exposed.Rearm = 2 * time.Second
	h := newHarness(t, cfg)
	for round := range 2 {
		for i := range 50 {
			ts := at(time.Duration(round)*5*time.Second + time.Duration(i)*time.Millisecond)
			client, host := fmt.Sprintf("81.2.0.10:%d", 30000+100*round+i), fmt.Sprintf("10.1.0.%d:7", 1+i)
			h.feed(udp(ts, client, host, []byte("ping")), udp(ts.Add(300*time.Microsecond), host, client, []byte("ping")))
		}
	}
	h.flush()
	perSecond := map[int64]int{}
	phases := map[string][NumPhases]int{}
	for _, a := range h.out.alerts {
		if a.Phase() == PhaseStart {
			perSecond[a.Time.Unix()-base.Unix()]++
		}
		ph := phases[a.ID()]
		ph[a.Phase()]++
		phases[a.ID()] = ph
	}
	if perSecond[0] != 10 || perSecond[5] != 10 || len(perSecond) != 2 {
		t.Errorf("findings per second: %v, want 10 in seconds 0 and 5", perSecond)
	}
	// The limit holds back starts only: each finding announced ends.
	for id, ph := range phases {
		if ph != [NumPhases]int{PhaseStart: 1, PhaseEnd: 1} {
			t.Errorf("finding %s: phases %v, want a start and an end", id, ph)
		}
	}
	// In the first second, the exposures take the limit before the scan
	// of the 50 hosts is seen; it is held back, its share kept, and goes
	// out with the scanner's next probe. The 40 exposures held back are
	// tried again as their hosts answer, as long as the limit allows.
	var scans []int64
	for _, a := range h.out.alerts {
		if a.Kind() == KindScan && a.Phase() == PhaseStart {
			scans = append(scans, a.Time.Unix()-base.Unix())
		}
	}
	if len(scans) != 1 || scans[0] != 5 {
		t.Errorf("the scan was announced in seconds %v, want 5", scans)
	}
	if got := suppressedByKind(h.eng.Stats()); got != [NumKinds]uint64{KindScan: 1, KindExposed: 41} {
		t.Errorf("suppressed %v, want a scan and 41 exposures", got)
	}
}

// TestNoiseCannotStarveRealIncidents floods the alert limit with forged
// spoofed_flood findings, 200 new targets every second for a minute, while
// a real reflection starts and ends: the reflection is announced at most
// a second later than it would be without the noise, its end goes out, and every incident
// announced is ended; what was held back is counted by kind.
func TestNoiseCannotStarveRealIncidents(t *testing.T) {
	cfg := homeConfig()
	cfg.EndAfter = 5 * time.Second
	cfg.SpoofedFlood.PPS = 1 // five forged packets within the window
	real := reflected(at(20*time.Second), 200, 2000, 30, "10.1.0.5")
	quiet := newHarness(t, cfg)
	quiet.feed(real...)
	quiet.flush()
	var want *Alert
	for _, a := range quiet.out.alerts {
		if a.Kind() == KindReflection && a.Phase() == PhaseStart {
			want = a
		}
	}
	if want == nil {
		t.Fatal("the reflection alone raises no alert")
	}

	// Each noise target gets six packets from a reserved source within
	// half a second, then nothing.
	noise := every(base, 1200, 60*1200, func(i int, ts time.Time) *capture.Packet {
		target := i / 6
		return udp(ts, fmt.Sprintf("240.0.%d.%d:40000", i%6, 1+i%200), fmt.Sprintf("10.2.%d.%d:13", target/250, target%250), nil)
	})
	h := newHarness(t, cfg)
	h.feed(mergeByTime(noise, real)...)
	h.flush()
	starts, ends := map[string]int{}, map[string]int{}
	startsPerSecond := map[int64]int{}
	var got *Alert
	for _, a := range h.out.alerts {
		switch a.Phase() {
		case PhaseStart:
			starts[a.Incident.ID]++
			startsPerSecond[a.Time.Unix()]++
			if a.Kind() == KindReflection {
				got = a
			}
		case PhaseEnd:
			ends[a.Incident.ID]++
		}
	}
	// The noise may have taken the second in which the reflection crossed
	// its threshold; the next second is kept for it.
	if got == nil || got.Incident.ID != want.Incident.ID || got.Time.Sub(want.Time) > time.Second {
		t.Fatalf("the reflection's start: %v, want %v, or a second later", got, want)
	}
	if ends[want.Incident.ID] != 1 {
		t.Errorf("the reflection's end did not go out")
	}
	for id, n := range starts {
		if n != 1 || ends[id] != 1 {
			t.Errorf("incident %s: %d starts, %d ends", id, n, ends[id])
		}
	}
	for sec, n := range startsPerSecond {
		if n > cfg.MaxAlertsPerSecond {
			t.Errorf("%d starts in second %d", n, sec)
		}
	}
	if slices.ContainsFunc(h.eng.r.waiting, func(n int) bool { return n != 0 }) {
		t.Errorf("starts still waiting after the flush: %v", h.eng.r.waiting)
	}
	st := h.eng.Stats()
	by := suppressedByKind(st)
	if by[KindSpoofedFlood] == 0 || by[KindSpoofedFlood] != st.Suppressed-by[KindReflection] {
		t.Errorf("suppressed %d, by kind %v", st.Suppressed, by)
	}
	if startsPerSecond[want.Time.Unix()] != cfg.MaxAlertsPerSecond {
		t.Errorf("the noise did not fill the second the reflection began in: %d starts", startsPerSecond[want.Time.Unix()])
	}
}

// mergeByTime merges two time-ordered packet lists into one.
func mergeByTime(a, b []*capture.Packet) []*capture.Packet {
	out := make([]*capture.Packet, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].Timestamp.Before(a[0].Timestamp) {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

// wol returns a Wake-on-LAN magic packet for mac, with extra bytes after
// the 16 copies (a SecureOn password).
func wol(ts time.Time, dst string, extra int) *capture.Packet {
	b := bytes.Repeat([]byte{0xff}, 6)
	mac := []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}
	for range 16 {
		b = append(b, mac...)
	}
	b = append(b, make([]byte, extra)...)
	return udp(ts, "10.1.0.250:40000", dst, b)
}

func TestWakeOnLANIsNeverEvidence(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(every(base, 150, 1500, func(i int, ts time.Time) *capture.Packet {
		dst := []string{"10.1.0.255:7", "255.255.255.255:7", "10.1.0.9:7"}[i%3]
		return wol(ts, dst, []int{0, 4, 6}[i%3])
	})...)
	for i := range 25 {
		h.feed(wol(at(20*time.Second+time.Duration(i)*time.Millisecond), fmt.Sprintf("10.1.0.%d:7", 1+i), 0))
	}
	h.flush()
	h.expect()
	if st := h.eng.Stats(); st.WakeOnLAN != 1525 {
		t.Errorf("WakeOnLAN %d", st.WakeOnLAN)
	}
	// A payload that only starts like one is ordinary evidence.
	p := wol(base, "10.1.0.9:7", 0)
	p.Payload[50] ^= 1
	if isWakeOnLAN(p) {
		t.Error("corrupted magic packet taken for Wake-on-LAN")
	}
}

// mixed returns a realistic mix: ordinary web and DNS traffic, an echo
// monitor, a reflection attack, a loop and a random-source flood.
func mixed(n int) []*capture.Packet {
	rng := rand.New(rand.NewPCG(7, 8))
	ps := make([]*capture.Packet, 0, n)
	for i := range n {
		ts := at(time.Duration(i) * 100 * time.Microsecond) // 10k pps
		var p *capture.Packet
		switch i % 10 {
		case 0, 1, 2:
			p = tcp(ts, fmt.Sprintf("10.1.0.%d:%d", 1+i%50, 40000+i%100), "81.2.0.80:443", capture.TCPAck, make([]byte, 500))
		case 3:
			p = udp(ts, fmt.Sprintf("10.1.0.%d:%d", 1+i%50, 50000+i%100), "81.2.0.53:53", make([]byte, 40))
		case 4, 5:
			p = udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%12), "10.1.0.10:40000", make([]byte, 100))
		case 6:
			p = udp(ts, "10.1.0.19:19", "10.1.0.7:7", make([]byte, 64))
		case 7:
			p = udp(ts, "10.1.0.7:7", "10.1.0.19:19", make([]byte, 64))
		case 8:
			p = randomSource(rng, ts, "10.1.0.77:7")
		case 9:
			p = udp(ts, "81.2.0.10:30000", "10.1.0.8:7", []byte("ping"))
		}
		ps = append(ps, p)
	}
	return ps
}

func TestEngineAllocatesNothingPerPacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		mix  func() []*capture.Packet
	}{
		{"plain", func() []*capture.Packet { return mixed(200_000) }},
		// The same mix in VXLAN, half of it in each of two tenants: the
		// alerts carry the tunnel, and the tables hold both tenants' keys.
		{"tunnelled", func() []*capture.Packet {
			ps := mixed(200_000)
			for i, p := range ps {
				p.Tunnel, p.Tenant = vxlan42, uint32(1+i%2)
			}
			return ps
		}},
		// The same mix as router telemetry from three exporters: sFlow
		// samples at 1 in 100, and flow records of 30 s, whose packets
		// carry no payload. Noting exporters costs nothing once known.
		{"telemetry", func() []*capture.Packet {
			ps := mixed(200_000)
			for i, p := range ps {
				ex := []string{"192.0.2.1", "192.0.2.2", "2001:db8::3"}[i%3]
				if i%2 == 0 {
					sflow(p, ex, uint32(i%7), 9, 100)
				} else {
					record(p, ex, 50, 30*time.Second)
				}
			}
			return ps
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &countingWriter{}
			cfg := homeConfig()
			cfg.SensorName = "sensor-1"
			// Updates every second of the 5 s measured: writing alerts is
			// measured too.
			cfg.UpdateInterval = time.Second
			e, err := New(cfg, out)
			if err != nil {
				t.Fatal(err)
			}
			flows, _ := NewFlows(FlowConfig{MaxFlows: 100_000, Ports: cfg.FlowPorts()})
			ps := tc.mix()
			// Warm up: make the keys, open the incidents, grow the buffers.
			for _, p := range ps[:100_000] {
				f, dir := flows.Update(p)
				e.Packet(p, f, dir)
			}
			warm := out.n
			i := 100_000
			allocs := testing.AllocsPerRun(50_000, func() {
				p := ps[i]
				i++
				f, dir := flows.Update(p)
				e.Packet(p, f, dir)
			})
			if allocs != 0 {
				t.Errorf("%v allocations per packet", allocs)
			}
			if warm == 0 || out.n == warm {
				t.Errorf("the mix raised %d alerts warming up, %d measured", warm, out.n-warm)
			}
		})
	}
}

// countingWriter renders each alert into a reused buffer.
type countingWriter struct {
	buf []byte
	n   int
}

func (w *countingWriter) WriteAlert(a *Alert) {
	w.buf = a.AppendEVE(w.buf[:0])
	w.n++
}

func BenchmarkEngine(b *testing.B) {
	cfg := homeConfig()
	e, err := New(cfg, &countingWriter{})
	if err != nil {
		b.Fatal(err)
	}
	flows, _ := NewFlows(FlowConfig{MaxFlows: 100_000, Ports: cfg.FlowPorts()})
	ps := mixed(100_000)
	span := ps[len(ps)-1].Timestamp.Sub(ps[0].Timestamp) + 100*time.Microsecond
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := ps[i%len(ps)]
		// Keep packet time moving forward across laps of the mix.
		p.Timestamp = p.Timestamp.Add(span)
		f, dir := flows.Update(p)
		e.Packet(p, f, dir)
	}
}

func TestDeterministic(t *testing.T) {
	run := func() string {
		h := newHarness(t, homeConfig())
		h.feed(mixed(100_000)...)
		h.flush()
		return strings.Join(h.out.lines, "\n")
	}
	a, b := run(), run()
	if a != b || a == "" {
		t.Fatalf("two runs differ or are empty (%d, %d bytes)", len(a), len(b))
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(DefaultConfig(), nil); err == nil {
		t.Error("nil writer accepted")
	}
	cfg := DefaultConfig()
	cfg.Reflection.PPS = 0
	if _, err := New(cfg, &sink{}); err == nil || err.Error() != "detect: reflection.pps: must be positive, not 0" {
		t.Errorf("err %v", err)
	}
}

func TestTickEndsIncidentsWhileQuiet(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 800, 4000, 12, "10.1.0.10")...)
	h.expect("reflection/start/9000001 10.1.0.10")
	h.eng.Tick(at(30 * time.Second))
	h.expect("reflection/start/9000001 10.1.0.10")
	h.eng.Tick(at(70 * time.Second))
	h.expect("reflection/start/9000001 10.1.0.10", "reflection/end/9000001 10.1.0.10")
	if st := h.eng.Stats(); st.Open != 0 || st.Alerts != 2 {
		t.Errorf("open %d alerts %d", st.Open, st.Alerts)
	}
}

func TestEvictionEndsIncident(t *testing.T) {
	cfg := homeConfig()
	cfg.Reflection.MaxVictims = 2
	cfg.Reflection.PrefixV4 = 0
	h := newHarness(t, cfg)
	h.feed(reflected(base, 800, 800, 12, "10.1.0.10")...)
	h.feed(reflected(at(time.Second), 800, 800, 12, "10.1.0.11")...)
	h.feed(reflected(at(2*time.Second), 800, 800, 12, "10.1.0.12")...)
	h.expect(
		"reflection/start/9000001 10.1.0.10",
		"reflection/start/9000001 10.1.0.11",
		"reflection/end/9000001 10.1.0.10",
		"reflection/start/9000001 10.1.0.12",
	)
	st := h.eng.Stats()
	if st.Tables[0].Evicted != 1 || st.Open != 2 {
		t.Errorf("tables %+v open %d", st.Tables[0], st.Open)
	}
	h.flush()
	if n := len(h.out.alerts); n != 6 {
		t.Errorf("%d alerts after flush: %q", n, h.out.summary())
	}
}

func TestStatsJSON(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 800, 4000, 12, "10.1.0.10")...)
	b, err := json.Marshal(h.eng.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"packets":4000`, `"alerts":1`, `"open":1`,
		`"reflection":{"incidents":1,"start":1,"update":0,"end":0,"suppressed":0}`,
		fmt.Sprintf(`{"name":"reflection.victims","len":1,"cap":%d,"evicted":0,"rejected":0}`, sized(t).Reflection.MaxVictims),
		fmt.Sprintf(`{"name":"reflection.reflectors","len":24,"cap":%d,"evicted":0,"rejected":0}`, sized(t).Reflection.MaxVictims*reflectorSlotsPerVictim)} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}
