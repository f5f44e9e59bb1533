package detect

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// sflow makes p an sFlow flow sample: its header seen by exporter ex at 1
// in rate, entering by ifIndex in and leaving by out.
func sflow(p *capture.Packet, ex string, in, out, rate uint32) *capture.Packet {
	p.Sample = capture.Sampled{Exporter: netip.MustParseAddr(ex), Format: capture.TelemetrySFlow,
		InIf: in, OutIf: out, Rate: rate, Packets: uint64(rate), Bytes: uint64(rate) * uint64(p.Length)}
	return p
}

// record makes p a NetFlow v9 record of packets packets of p's length over
// span, from exporter ex: addresses, ports and the average payload length,
// none of the packet's bytes.
func record(p *capture.Packet, ex string, packets uint64, span time.Duration) *capture.Packet {
	p.Sample = capture.Sampled{Exporter: netip.MustParseAddr(ex), Format: capture.TelemetryNetFlow9,
		InIf: 1, OutIf: 2, Rate: 1, Packets: packets, Bytes: packets * uint64(p.Length), Span: span, Record: true}
	p.Payload, p.TTL = nil, 0
	return p
}

// within10 reports whether got is within 10% of want.
func within10(got, want float64) bool { return math.Abs(got-want) <= want/10 }

// TestTelemetrySFlowReflection: sFlow samples of replies toward a victim
// count the sampling rate's packets each. 30 samples a second stay under
// the 50 pps threshold unsampled; at 1 in 100 they are 3000 pps, an
// incident whose rates, counts and alerts say so, and where it was seen.
func TestTelemetrySFlowReflection(t *testing.T) {
	for _, tc := range []struct {
		rate uint32
		want []string
	}{
		{1, nil},
		{100, []string{
			"reflection/start/9000001 10.1.0.10",
			"reflection/update/9000001 10.1.0.10",
			"reflection/update/9000001 10.1.0.10",
			"reflection/update/9000001 10.1.0.10",
			"reflection/end/9000001 10.1.0.10",
		}},
	} {
		t.Run(fmt.Sprintf("1 in %d", tc.rate), func(t *testing.T) {
			cfg := homeConfig()
			cfg.UpdateInterval = 5 * time.Second
			h := newHarness(t, cfg)
			h.feed(every(base, 30, 600, func(i int, ts time.Time) *capture.Packet { // 20 s
				p := udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%3), "10.1.0.10:40000", make([]byte, 100))
				return sflow(p, "192.0.2.1", 3, 7, tc.rate)
			})...)
			h.flush()
			h.expect(tc.want...)
			if tc.want == nil {
				return
			}
			for _, a := range h.out.alerts[1:4] {
				if in := a.Incident; !within10(in.PPS, 3000) || !within10(in.BPS, 3000*142*8) {
					t.Errorf("update at %v: %.1f pps %.1f bps, want about 3000 pps", a.Time, in.PPS, in.BPS)
				}
			}
			end := h.out.alerts[4]
			in := end.Incident
			if in.Packets != 60_000 || in.Bytes != 60_000*142 || !within10(in.PPS, 3000) || !within10(in.PeakPPS, 3000) {
				t.Errorf("end: %d packets %d bytes, %.1f pps, peak %.1f", in.Packets, in.Bytes, in.PPS, in.PeakPPS)
			}
			if in.ReflectorCount != 3 || in.Reflectors[0].Packets != 20_000 {
				t.Errorf("end: %d reflectors, the busiest %d packets", in.ReflectorCount, in.Reflectors[0].Packets)
			}
			wantTel := Sampling{Format: capture.TelemetrySFlow, Rate: 100}
			wantEx := []Exporter{{Addr: netip.MustParseAddr("192.0.2.1"), InIf: 3, OutIf: 7, Packets: 60_000}}
			if in.Sampling != wantTel || !slices.Equal(in.Exporters, wantEx) {
				t.Errorf("end: sampling %+v exporters %+v", in.Sampling, in.Exporters)
			}
			eve := h.out.lines[4]
			const members = `,"sampling":{"format":"sflow","rate":100,"estimated":true},` +
				`"exporters":[{"address":"192.0.2.1","input_ifindex":3,"output_ifindex":7,"packets":60000}],`
			if !strings.Contains(eve, members) {
				t.Errorf("EVE lacks %s:\n%s", members, eve)
			}
			if text := string(end.AppendText(nil)); !strings.HasSuffix(text, " [sflow 1:100 via 192.0.2.1 in 3 out 7]") {
				t.Errorf("text %s", text)
			}
		})
	}
}

// TestTelemetryFlowRecords: a flow record longer than the window counts
// its average rate over one window; one shorter counts whole.
func TestTelemetryFlowRecords(t *testing.T) {
	for _, tc := range []struct {
		name    string
		packets uint64
		span    time.Duration
		refl    int
		want    []string
		pps     float64 // at the end, right after the records; 0: not checked
		total   uint64
	}{
		// 50,000 packets over 100 s is 500 pps from each of 4 reflectors.
		{"4 records of 100 s", 50_000, 100 * time.Second, 4, []string{
			"reflection/start/9000001 10.1.0.10",
			"reflection/end/9000001 10.1.0.10",
		}, 2000, 200_000},
		// 300 packets in 2 s, within the 5 s window: 60 pps, over 50.
		{"one record of 2 s", 300, 2 * time.Second, 1, []string{
			"reflection/start/9000001 10.1.0.10",
			"reflection/end/9000001 10.1.0.10",
		}, 0, 300},
		// The same 300 over 100 s are 3 pps.
		{"one record of 100 s", 300, 100 * time.Second, 1, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			for i := range tc.refl {
				// Late in the meter's bucket, where its rate reads the window
				// whole: the records arrive within 30 ms of each other.
				ts := at(900*time.Millisecond + time.Duration(i)*10*time.Millisecond)
				p := udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i), "10.1.0.10:40000", make([]byte, 100))
				h.feed(record(p, "192.0.2.1", tc.packets, tc.span))
			}
			h.flush()
			h.expect(tc.want...)
			if tc.want == nil {
				return
			}
			end := h.out.alerts[len(h.out.alerts)-1].Incident
			if end.Packets != tc.total || end.Sampling != (Sampling{Format: capture.TelemetryNetFlow9, Rate: 1}) {
				t.Errorf("end: %d packets, sampling %+v", end.Packets, end.Sampling)
			}
			if tc.pps != 0 && (!within10(end.PPS, tc.pps) || !within10(end.PeakPPS, tc.pps)) {
				t.Errorf("end: %.1f pps, peak %.1f, want about %v", end.PPS, end.PeakPPS, tc.pps)
			}
			if !strings.Contains(h.out.lines[0], `"sampling":{"format":"netflow9","rate":1,"estimated":false}`) {
				t.Errorf("start EVE: %s", h.out.lines[0])
			}
		})
	}
}

// TestTelemetryLoopAndSpoofedFlood: the loop's packets each way and a
// spoofed flood's forged packets count what samples stand for.
func TestTelemetryLoopAndSpoofedFlood(t *testing.T) {
	loop := func(i int, ts time.Time) *capture.Packet {
		if i%2 == 0 {
			return udp(ts, "10.1.0.19:19", "10.1.0.7:7", make([]byte, 64))
		}
		return udp(ts, "10.1.0.7:7", "10.1.0.19:19", make([]byte, 64))
	}
	bogon := func(i int, ts time.Time) *capture.Packet { return udp(ts, "127.0.0.1:9", "10.1.0.80:7", nil) }
	for _, tc := range []struct {
		name  string
		rate  uint32
		mk    func(i int, ts time.Time) *capture.Packet
		n     int // samples, 2 a second
		want  []string
		bogon uint64 // the end's bogon evidence
	}{
		// Two samples each way are 10 packets each way at 1 in 5: loop.packets.
		{"loop, 1 in 5", 5, loop, 4, []string{"loop/start/9000004 10.1.0.7:7-10.1.0.19:19", "loop/end/9000004 10.1.0.7:7-10.1.0.19:19"}, 0},
		{"loop, 1 in 1", 1, loop, 4, nil, 0},
		// 2 bogon samples a second at 1 in 100: 200 forged pps, over 100.
		{"bogon flood, 1 in 100", 100, bogon, 20, []string{"spoofed_flood/start/9000005 10.1.0.80", "spoofed_flood/end/9000005 10.1.0.80"}, 2000},
		{"bogon flood, 1 in 1", 1, bogon, 20, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(every(base, 2, tc.n, func(i int, ts time.Time) *capture.Packet {
				return sflow(tc.mk(i, ts), "192.0.2.1", 3, 7, tc.rate)
			})...)
			h.flush()
			h.expect(tc.want...)
			if tc.bogon != 0 {
				if ev := h.out.alerts[1].Incident.Evidence; ev.Bogon != tc.bogon {
					t.Errorf("evidence %+v, want %d bogon packets", ev, tc.bogon)
				}
			}
		})
	}
}

// TestTelemetryExporters: an incident lists the exporters that reported
// it, the busiest first (ties by address), at most four, each with the
// ifIndex of its latest packet.
func TestTelemetryExporters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes []string // the exporter of each sample in turn
		want   []Exporter
		text   string
	}{
		{"two, the busiest first", []string{"192.0.2.9", "192.0.2.1", "192.0.2.9"}, []Exporter{
			{Addr: netip.MustParseAddr("192.0.2.9"), InIf: 11, OutIf: 7, Packets: 40_000},
			{Addr: netip.MustParseAddr("192.0.2.1"), InIf: 11, OutIf: 7, Packets: 20_000},
		}, " [sflow 1:100 via 192.0.2.9 in 11 out 7 and 1 more]"},
		{"a tie, by address", []string{"192.0.2.9", "192.0.2.1"}, []Exporter{
			{Addr: netip.MustParseAddr("192.0.2.1"), InIf: 11, OutIf: 7, Packets: 30_000},
			{Addr: netip.MustParseAddr("192.0.2.9"), InIf: 11, OutIf: 7, Packets: 30_000},
		}, " [sflow 1:100 via 192.0.2.1 in 11 out 7 and 1 more]"},
		{"five: the first four seen", []string{"192.0.2.5", "192.0.2.4", "192.0.2.3", "192.0.2.2", "192.0.2.1"}, []Exporter{
			{Addr: netip.MustParseAddr("192.0.2.2"), InIf: 11, OutIf: 7, Packets: 12_000},
			{Addr: netip.MustParseAddr("192.0.2.3"), InIf: 11, OutIf: 7, Packets: 12_000},
			{Addr: netip.MustParseAddr("192.0.2.4"), InIf: 11, OutIf: 7, Packets: 12_000},
			{Addr: netip.MustParseAddr("192.0.2.5"), InIf: 11, OutIf: 7, Packets: 12_000},
		}, " [sflow 1:100 via 192.0.2.2 in 11 out 7 and 3 more]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(every(base, 30, 600, func(i int, ts time.Time) *capture.Packet {
				p := udp(ts, "45.33.0.1:7", "10.1.0.10:40000", make([]byte, 100))
				// Each exporter's latest packet came in by ifIndex 11.
				return sflow(p, tc.routes[i%len(tc.routes)], uint32(1+10*(i/590)), 7, 100)
			})...)
			h.flush()
			end := h.out.alerts[len(h.out.alerts)-1]
			if end.Phase() != PhaseEnd || !slices.Equal(end.Incident.Exporters, tc.want) {
				t.Errorf("%s exporters\n got %+v\nwant %+v", end.Phase(), end.Incident.Exporters, tc.want)
			}
			if text := string(end.AppendText(nil)); !strings.HasSuffix(text, tc.text) {
				t.Errorf("text %s, want it to end in %s", text, tc.text)
			}
		})
	}
}

// TestTelemetryClearedWithActivity: what an incident noted of telemetry
// goes with it; the key's next activity notes its own, and one seen in
// captured packets only has none.
func TestTelemetryClearedWithActivity(t *testing.T) {
	h := newHarness(t, homeConfig())
	attack := func(start time.Time, ex string) []*capture.Packet {
		return every(start, 30, 300, func(i int, ts time.Time) *capture.Packet {
			p := udp(ts, "45.33.0.1:7", "10.1.0.10:40000", make([]byte, 100))
			if ex == "" {
				return p
			}
			return sflow(p, ex, 3, 0, 100)
		})
	}
	h.feed(attack(base, "192.0.2.1")...)
	h.feed(attack(at(5*time.Minute), "192.0.2.2")...)
	h.feed(reflected(at(10*time.Minute), 800, 4000, 3, "10.1.0.10")...)
	h.flush()
	var got []string
	for i, a := range h.out.alerts {
		var ex []string
		for _, x := range a.Incident.Exporters {
			ex = append(ex, x.Addr.String())
		}
		got = append(got, fmt.Sprintf("%s %s %v", a.Phase(), a.Incident.Sampling.Format, ex))
		if a.Incident.Sampling.Rate == 0 && (strings.Contains(h.out.lines[i], `"sampling"`) || strings.Contains(h.out.lines[i], `"exporters"`) ||
			strings.HasSuffix(string(a.AppendText(nil)), "]")) {
			t.Errorf("an alert without telemetry says some:\n%s\n%s", h.out.lines[i], a.AppendText(nil))
		}
	}
	want := []string{
		"start sflow [192.0.2.1]", "end sflow [192.0.2.1]",
		"start sflow [192.0.2.2]", "end sflow [192.0.2.2]",
		"start none []", "end none []",
	}
	if !slices.Equal(got, want) {
		t.Errorf("alerts\n got %q\nwant %q", got, want)
	}
	// Only the ifIndex the exporter gave is written.
	if !strings.Contains(h.out.lines[0], `"exporters":[{"address":"192.0.2.1","input_ifindex":3,"packets":`) {
		t.Errorf("EVE %s", h.out.lines[0])
	}
}

// TestTelemetryWakeOnLAN: a flow record has no payload to look at, so one
// to UDP 7 or 9 the size of a magic packet is taken for Wake-on-LAN; a
// sample has its packet's bytes and is judged on them. A record is never
// an nmap probe.
func TestTelemetryWakeOnLAN(t *testing.T) {
	rec := func(dst string, payloadLen int) *capture.Packet {
		p := record(udp(base, "10.1.0.250:40000", dst, make([]byte, payloadLen)), "192.0.2.1", 1000, time.Second)
		p.PayloadLen = payloadLen
		return p
	}
	for _, tc := range []struct {
		name string
		p    *capture.Packet
		wol  bool
	}{
		{"record of 102 bytes to 9", rec("10.1.0.255:9", 102), true},
		{"record of 106 bytes to 7 (SecureOn)", rec("10.1.0.9:7", 106), true},
		{"record of 108 bytes to 7 (SecureOn)", rec("10.1.0.9:7", 108), true},
		{"record of 102 bytes to 19", rec("10.1.0.9:19", 102), false},
		{"record of 100 bytes to 7", rec("10.1.0.9:7", 100), false},
		{"sample of a magic packet", sflow(wol(base, "10.1.0.9:9", 0), "192.0.2.1", 1, 2, 100), true},
		{"sample of 102 zeros", sflow(udp(base, "10.1.0.250:40000", "10.1.0.9:9", make([]byte, 102)), "192.0.2.1", 1, 2, 100), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isWakeOnLAN(tc.p); got != tc.wol {
				t.Errorf("isWakeOnLAN %v, want %v", got, tc.wol)
			}
		})
	}
	if p := rec("10.1.0.9:7", 4); isNmapProbe(p) {
		t.Error("a record taken for an nmap probe")
	}

	// A host waking many others through records raises nothing; the same
	// records a byte shorter are forged requests into echo.
	for _, tc := range []struct {
		size int
		wol  uint64
		want []string
	}{
		{102, 100, nil},
		{101, 0, []string{"reflection/start/9000001 10.1.0.250", "reflection/end/9000001 10.1.0.250"}},
	} {
		h := newHarness(t, homeConfig())
		h.feed(every(base, 10, 100, func(i int, ts time.Time) *capture.Packet {
			return rec(fmt.Sprintf("10.1.0.%d:7", 1+i%10), tc.size)
		})...)
		h.flush()
		h.expect(tc.want...)
		if st := h.eng.Stats(); st.WakeOnLAN != tc.wol {
			t.Errorf("payload %d: WakeOnLAN %d, want %d", tc.size, st.WakeOnLAN, tc.wol)
		}
	}
}

// TestFlowCountsTelemetry: the flow table counts what a packet stands for,
// both ways; a two-way flow's packet count stops at 2^32-1.
func TestFlowCountsTelemetry(t *testing.T) {
	ft, err := NewFlows(FlowConfig{Ports: NewPortSet(7)})
	if err != nil {
		t.Fatal(err)
	}
	req := record(udp(base, "10.1.0.250:40000", "10.1.0.9:7", make([]byte, 100)), "192.0.2.1", 1000, 10*time.Second)
	f, dir := ft.Update(req)
	if dir != FromOrig || f.Packets != [2]uint64{1000, 0} || f.Bytes != [2]uint64{142_000, 0} {
		t.Fatalf("request: %v %+v", dir, f)
	}
	rep := sflow(udp(at(time.Second), "10.1.0.9:7", "10.1.0.250:40000", make([]byte, 100)), "192.0.2.1", 1, 2, 100)
	f, dir = ft.Update(rep)
	if dir != FromResp || f.Packets != [2]uint64{1000, 100} || f.Bytes != [2]uint64{142_000, 14_200} {
		t.Fatalf("reply: %v %+v", dir, f)
	}
	huge := record(udp(at(2*time.Second), "10.1.0.250:40000", "10.1.0.9:7", make([]byte, 100)), "192.0.2.1", math.MaxUint64, time.Second)
	f, _ = ft.Update(huge)
	if f.Packets[FromOrig] != 1<<32-1 || f.Bytes[FromOrig] != math.MaxUint64 {
		t.Errorf("saturated: %+v", f)
	}
}

// TestTelemetryRendering: the alert members and the text words of
// telemetry, and their absence without it.
func TestTelemetryRendering(t *testing.T) {
	a := testAlertOf(t)
	plainEVE, plainText := string(a.AppendEVE(nil)), string(a.AppendText(nil))
	if strings.Contains(plainEVE, "sampling") || strings.Contains(plainEVE, "exporters") || strings.Contains(plainText, "[sflow") {
		t.Fatalf("captured alert mentions telemetry:\n%s\n%s", plainEVE, plainText)
	}
	a.Incident.Sampling = Sampling{Format: capture.TelemetrySFlow, Rate: 1000}
	a.Incident.Exporters = []Exporter{
		{Addr: netip.MustParseAddr("192.0.2.1"), InIf: 3, OutIf: 7, Packets: 12000},
		{Addr: netip.MustParseAddr("2001:db8::1"), Packets: 1000},
	}
	eve := string(a.AppendEVE(nil))
	const want = `,"sampling":{"format":"sflow","rate":1000,"estimated":true},"exporters":[` +
		`{"address":"192.0.2.1","input_ifindex":3,"output_ifindex":7,"packets":12000},` +
		`{"address":"2001:db8::1","packets":1000}],`
	if !strings.Contains(eve, want) {
		t.Errorf("EVE lacks %s:\n%s", want, eve)
	}
	if eve != strings.Replace(plainEVE, `"direction":"inbound",`, `"direction":"inbound"`+want, 1) {
		t.Errorf("the members are not right after the direction:\n%s", eve)
	}
	if text := string(a.AppendText(nil)); text != plainText+" [sflow 1:1000 via 192.0.2.1 in 3 out 7 and 1 more]" {
		t.Errorf("text %s", text)
	}
	if c := a.Clone(); !slices.Equal(c.Incident.Exporters, a.Incident.Exporters) || &c.Incident.Exporters[0] == &a.Incident.Exporters[0] {
		t.Error("Clone shares or drops the exporters")
	}
	// No exporter named: the sampling alone.
	a.Incident.Exporters = nil
	a.Incident.Sampling = Sampling{Format: capture.TelemetryIPFIX, Rate: 1}
	if eve := string(a.AppendEVE(nil)); !strings.Contains(eve, `"sampling":{"format":"ipfix","rate":1,"estimated":false},"victim"`) {
		t.Errorf("EVE %s", eve)
	}
	if text := string(a.AppendText(nil)); !strings.HasSuffix(text, " [ipfix 1:1]") {
		t.Errorf("text %s", text)
	}
}

// testAlertOf returns the start alert of a plain reflection.
func testAlertOf(t *testing.T) *Alert {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 800, 800, 3, "10.1.0.10")...)
	if len(h.out.alerts) == 0 {
		t.Fatal("no alert")
	}
	return h.out.alerts[0]
}
