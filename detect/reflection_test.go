package detect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// homeConfig is the default config protecting 10.1.0.0/16.
func homeConfig() Config {
	cfg := DefaultConfig()
	cfg.HomeNet = []string{"10.1.0.0/16"}
	return cfg
}

// reflected returns count replies from nrefl reflectors (45.33.0.1..,
// alternating echo and chargen) toward victim at rate pps.
func reflected(start time.Time, pps float64, count, nrefl int, victim string) []*capture.Packet {
	return every(start, pps, count, func(i int, ts time.Time) *capture.Packet {
		port := 7
		if i%nrefl%2 == 1 {
			port = 19
		}
		return udp(ts, fmt.Sprintf("45.33.0.%d:%d", 1+i%nrefl, port), victim+":40000", make([]byte, 100))
	})
}

func TestReflectionInbound(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 800, 8000, 12, "10.1.0.10")...) // 10 s at 800 pps
	h.flush()
	h.expect(
		"reflection/start/9000001 10.1.0.10",
		"reflection/end/9000001 10.1.0.10",
	)
	a := h.out.alerts[0]
	in := a.Incident
	if in.ReflectorCount != 12 || len(in.Reflectors) != 10 || in.Direction != "inbound" || a.Severity != 2 {
		t.Errorf("start: reflectors %d (%d listed), direction %s, severity %d", in.ReflectorCount, len(in.Reflectors), in.Direction, a.Severity)
	}
	if !slices.Equal(in.Services, []string{"echo", "chargen"}) {
		t.Errorf("services %q", in.Services)
	}
	// The threshold is 50 pps over the 4 to 5 s the window covers: about
	// 220 packets, at 800 pps after 0.27 s.
	if in.Packets < 200 || in.Packets > 250 || a.Time != at(time.Duration(in.Packets-1)*time.Second/800) ||
		in.FirstSeen != base || in.PPS < 50 || in.PPS > 51 {
		t.Errorf("start after %d packets at %v (%v pps), first seen %v", in.Packets, a.Time, in.PPS, in.FirstSeen)
	}
	if a.Src.Addr() != in.Reflectors[0].Addr || a.Dst.Addr().String() != "10.1.0.10" {
		t.Errorf("src %v dst %v", a.Src, a.Dst)
	}
	end := h.out.alerts[1].Incident
	if end.Packets != 8000 || end.PeakPPS < 790 || end.ID != in.ID {
		t.Errorf("end: packets %d peak %v id %s/%s", end.Packets, end.PeakPPS, end.ID, in.ID)
	}
}

func TestReflectionOutbound(t *testing.T) {
	// Forged requests from the victim into three of our echo servers, and
	// their replies: one outbound incident, severity 1, and our three
	// servers are exposed.
	h := newHarness(t, homeConfig())
	var ps []*capture.Packet
	for i := range 3000 {
		ts := at(time.Duration(i) * time.Millisecond)
		srv := fmt.Sprintf("10.1.2.%d:7", 1+i%3)
		ps = append(ps, udp(ts, "81.2.0.9:5353", srv, make([]byte, 64)),
			udp(ts.Add(100*time.Microsecond), srv, "81.2.0.9:5353", make([]byte, 64)))
	}
	h.feed(ps...)
	h.flush()
	h.expect(
		"exposed/start/9000008 UDP/10.1.2.1:7",
		"exposed/start/9000008 UDP/10.1.2.2:7",
		"exposed/start/9000008 UDP/10.1.2.3:7",
		"reflection/start/9000002 81.2.0.9",
		"exposed/end/9000008 UDP/10.1.2.1:7",
		"exposed/end/9000008 UDP/10.1.2.2:7",
		"exposed/end/9000008 UDP/10.1.2.3:7",
		"reflection/end/9000002 81.2.0.9",
	)
	a := h.out.alerts[3]
	if a.Severity != 1 || a.Incident.Direction != "outbound" || a.Incident.ReflectorCount != 3 {
		t.Errorf("severity %d direction %s reflectors %d", a.Severity, a.Incident.Direction, a.Incident.ReflectorCount)
	}
	// Both sides are seen; the incident counts the attack once, and each
	// server's exposure the forged requests it took and answered.
	if end := h.out.alerts[7].Incident; end.Packets != 3000 {
		t.Errorf("end packets %d, want 3000", end.Packets)
	}
	for _, a := range h.out.alerts[4:7] {
		if in := a.Incident; in.Requests != 1000 || in.Replies != 1000 {
			t.Errorf("%s: %d requests, %d replies", a.Key(), in.Requests, in.Replies)
		}
	}
}

func TestReflectionBelowThreshold(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 5, 600, 4, "10.1.0.10")...) // 2 minutes at 5 pps
	h.flush()
	h.expect()
}

func TestReflectionBitsThreshold(t *testing.T) {
	// 45 pps of 3000-byte chargen replies (jumbo frames) is 1.08 Mbit/s:
	// under 50 pps, over 1 Mbit/s.
	h := newHarness(t, homeConfig())
	h.feed(every(base, 45, 450, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, "45.33.0.1:19", "10.1.0.10:40000", make([]byte, 3000-42))
	})...)
	h.flush()
	h.expect("reflection/start/9000001 10.1.0.10", "reflection/end/9000001 10.1.0.10")
}

func TestCarpetBombing(t *testing.T) {
	// 400 pps over the 254 hosts of 10.1.7.0/24: under 2 pps per host.
	h := newHarness(t, homeConfig())
	h.feed(every(base, 400, 4000, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%8), fmt.Sprintf("10.1.7.%d:40000", 1+i%254), make([]byte, 80))
	})...)
	h.flush()
	h.expect("reflection/start/9000003 10.1.7.0/24", "reflection/end/9000003 10.1.7.0/24")
	in := h.out.alerts[0].Incident
	if in.Victim.String() != "10.1.7.0/24" || in.Hosts < 100 || in.ReflectorCount != 8 {
		t.Errorf("victim %v hosts %d reflectors %d", in.Victim, in.Hosts, in.ReflectorCount)
	}
}

func TestReflectionSingleHostIsNotPrefix(t *testing.T) {
	// One hot victim and a neighbour at 1 pps: a host incident only.
	h := newHarness(t, homeConfig())
	ps := reflected(base, 500, 5000, 4, "10.1.0.10")
	ps = append(ps, every(base, 1, 10, func(i int, ts time.Time) *capture.Packet {
		return udp(ts.Add(time.Millisecond/3), "45.33.0.1:7", "10.1.0.11:40000", nil)
	})...)
	slices.SortStableFunc(ps, func(a, b *capture.Packet) int { return a.Timestamp.Compare(b.Timestamp) })
	h.feed(ps...)
	h.flush()
	h.expect("reflection/start/9000001 10.1.0.10", "reflection/end/9000001 10.1.0.10")
}

func TestNmapSweepIsNotReflection(t *testing.T) {
	// nmap probes 300 hosts in a second and 100 of them answer: a scan and
	// 100 exposures, never a reflection toward the scanner.
	cfg := homeConfig()
	cfg.MaxAlertsPerSecond = 0
	h := newHarness(t, cfg)
	for i := range 300 {
		ts := at(time.Duration(i) * 3 * time.Millisecond)
		host := fmt.Sprintf("10.1.%d.%d:7", i/250, 1+i%250)
		h.feed(udp(ts, "81.2.0.66:45000", host, []byte("help\r\n\r\n")))
		if i%3 == 0 {
			h.feed(udp(ts.Add(time.Millisecond), host, "81.2.0.66:45000", []byte("help\r\n\r\n")))
		}
	}
	h.flush()
	kinds := map[Kind]int{}
	for _, a := range h.out.alerts {
		if a.Phase() == PhaseStart {
			kinds[a.Kind()]++
		}
	}
	if kinds[KindReflection] != 0 || kinds[KindScan] != 1 || kinds[KindExposed] != 100 || len(h.out.alerts) != 2*101 {
		t.Fatalf("starts by kind %v, %d alerts (want each with its end)", kinds, len(h.out.alerts))
	}
}

func TestReflectionLifecycle(t *testing.T) {
	// 150 s of attack at 100 pps, then silence: a start, updates every
	// 60 s while the incident lasts (the third while it winds down), and
	// an end 60 s after the rate fell under the threshold.
	h := newHarness(t, homeConfig())
	h.feed(reflected(base, 100, 15000, 4, "10.1.0.10")...)
	// A keep-alive elsewhere moves packet time on.
	h.feed(every(at(150*time.Second), 1, 100, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, "81.2.0.1:1000", "81.2.0.2:2000", nil)
	})...)
	h.expect(
		"reflection/start/9000001 10.1.0.10",
		"reflection/update/9000001 10.1.0.10",
		"reflection/update/9000001 10.1.0.10",
		"reflection/update/9000001 10.1.0.10",
		"reflection/end/9000001 10.1.0.10",
	)
	as := h.out.alerts
	for i := 1; i <= 3; i++ {
		// Updates fall on the first second boundary after each minute.
		if d := as[i].Time.Sub(as[0].Time); d < time.Duration(i)*time.Minute || d > time.Duration(i)*time.Minute+time.Second {
			t.Errorf("update %d %v after the start", i, d)
		}
	}
	// The window stays above 50 pps until about 2.5 s after the attack
	// stops; the end comes end_after later.
	if d := as[4].Time.Sub(at(150 * time.Second)); d < 60*time.Second || d > 64*time.Second {
		t.Errorf("end %v after the attack", d)
	}
	if as[3].Incident.PPS != 0 || as[4].Incident.Packets != 15000 {
		t.Errorf("winding down: pps %v, end packets %d", as[3].Incident.PPS, as[4].Incident.Packets)
	}
	if as[1].Incident.PeakPPS < as[1].Incident.PPS || as[1].Incident.PPS < 95 {
		t.Errorf("update rates %v peak %v", as[1].Incident.PPS, as[1].Incident.PeakPPS)
	}
	for _, a := range as {
		if a.Incident.ID != as[0].Incident.ID {
			t.Errorf("incident id changed: %s", a.Incident.ID)
		}
	}
	// A second attack later is a new incident with a new id.
	h.feed(reflected(at(400*time.Second), 100, 1000, 4, "10.1.0.10")...)
	h.flush()
	if n := len(h.out.alerts); n != 7 || h.out.alerts[5].Incident.ID == as[0].Incident.ID ||
		h.out.alerts[6].Phase() != PhaseEnd {
		t.Fatalf("second incident: %q", h.out.summary())
	}
}

func TestReflectionAllow(t *testing.T) {
	cfg := homeConfig()
	cfg.Reflection.Allow = []string{"45.33.0.0/24"}
	h := newHarness(t, cfg)
	h.feed(reflected(base, 800, 4000, 12, "10.1.0.10")...)
	h.flush()
	h.expect()
}

func TestReflectionIPv6(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HomeNet = []string{"2a00:1450::/32"}
	h := newHarness(t, cfg)
	h.feed(every(base, 200, 2000, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, fmt.Sprintf("[2600:1f18::%d]:7", 1+i%5), "[2a00:1450::10]:5000", make([]byte, 200))
	})...)
	h.flush()
	h.expect("reflection/start/9000001 2a00:1450::10", "reflection/end/9000001 2a00:1450::10")
}

// TestReflectorSlotsBounded: victims hit from many reflectors grow their
// tallies into one pool of slots, sized by max_victims; when it runs dry a
// tally stops growing (the pool's table counts the refusals), and a victim
// dropped from its table gives its slots back.
func TestReflectorSlotsBounded(t *testing.T) {
	cfg := homeConfig()
	cfg.Reflection.MaxVictims, cfg.Reflection.PrefixV4 = 2, 0
	h := newHarness(t, cfg)
	slots := func() TableStats {
		for _, tb := range h.eng.Stats().Tables {
			if tb.Name == "reflection.reflectors" {
				return tb
			}
		}
		t.Fatal("no reflection.reflectors in the stats")
		return TableStats{}
	}
	h.feed(reflected(base, 2000, 4000, 200, "10.1.0.10")...)
	s := slots()
	if s.Cap != 2*reflectorSlotsPerVictim || s.Len > s.Cap || s.Rejected == 0 {
		t.Fatalf("after 200 reflectors: %+v", s)
	}
	if in := h.out.alerts[0].Incident; in.ReflectorCount < 24 || in.ReflectorCount >= 200 {
		t.Errorf("reflector count %d", in.ReflectorCount)
	}
	// Two more victims: the first finds the pool nearly dry, the second
	// pushes the first victim, still open, out of the table.
	h.feed(reflected(at(3*time.Second), 800, 800, 12, "10.1.0.11")...)
	h.feed(reflected(at(4*time.Second), 800, 800, 12, "10.1.0.12")...)
	held := 0
	for _, v := range []string{"10.1.0.11", "10.1.0.12"} {
		held += builtin[*Reflection](h.eng).hosts.get(victimOf(netip.MustParsePrefix(v+"/32"), 0)).refl.held()
	}
	if s := slots(); s.Len != held || s.Len > s.Cap {
		t.Errorf("after the eviction: %+v, the victims hold %d", s, held)
	}
	h.expect(
		"reflection/start/9000001 10.1.0.10",
		"reflection/start/9000001 10.1.0.11",
		"reflection/end/9000001 10.1.0.10",
		"reflection/start/9000001 10.1.0.12",
	)
}

// TestReflectorSlotsComeBack: victims that spilled into a HyperLogLog are
// pushed out and their entries reused, victim after victim: the slots
// they hold are never lost, so the pool never runs dry by churn alone.
func TestReflectorSlotsComeBack(t *testing.T) {
	cfg := homeConfig()
	cfg.Reflection.MaxVictims, cfg.Reflection.PrefixV4 = 20, 0
	cfg.EndAfter = time.Second
	h := newHarness(t, cfg)
	d := builtin[*Reflection](h.eng)
	for i := range 60 {
		// 200 reflectors, under the threshold: no incident holds the entry.
		start := at(time.Duration(i) * 10 * time.Second)
		h.feed(reflected(start, 40, 200, 200, fmt.Sprintf("10.1.0.%d", 10+i))...)
		held := 0
		for _, v := range append(d.hosts.lru.Values(), d.hosts.free...) {
			held += v.refl.held() + v.hosts.held()
		}
		if d.slots.left+held != d.slotsTotal {
			t.Fatalf("after victim %d: %d slots free and %d held, of %d", i, d.slots.left, held, d.slotsTotal)
		}
	}
}

// replies returns count replies from port of nrefl reflectors (45.33.1.1..)
// toward victim at rate pps, each of size bytes of payload.
func replies(start time.Time, pps float64, count, nrefl int, port uint16, victim string, size int) []*capture.Packet {
	return every(start, pps, count, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, fmt.Sprintf("45.33.1.%d:%d", 1+i%nrefl, port), victim+":40000", make([]byte, size))
	})
}

func TestReflectionDefaultPorts(t *testing.T) {
	// Every small service that answers any datagram reflects by default;
	// systat (11) is in the loop set only.
	for _, tc := range []struct {
		port uint16
		name string
		size int // a typical answer
	}{
		{7, "echo", 64}, {13, "daytime", 26}, {17, "qotd", 480}, {19, "chargen", 512}, {37, "time", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(replies(base, 300, 3000, 6, tc.port, "10.1.0.10", tc.size)...)
			h.flush()
			h.expect("reflection/start/9000001 10.1.0.10", "reflection/end/9000001 10.1.0.10")
			for _, a := range h.out.alerts {
				if !slices.Equal(a.Incident.Services, []string{tc.name}) || a.Signature.Msg != "ECHOWATCH "+tc.name+" reflection toward victim" {
					t.Errorf("%s: services %q, signature %q", a.Phase(), a.Incident.Services, a.Signature.Msg)
				}
			}
			if end := h.out.alerts[1].Incident; end.PeakPPS < 285 || end.PeakPPS > 315 {
				t.Errorf("peak %v pps, want 300 within 5%%", end.PeakPPS)
			}
		})
	}
	h := newHarness(t, homeConfig())
	h.feed(replies(base, 300, 3000, 6, 11, "10.1.0.10", 100)...)
	h.flush()
	h.expect()
}

func TestReflectionNamesServices(t *testing.T) {
	// The signature text, advice and text line name the services seen, in
	// port order, whatever order they came in; the id stays the table's.
	qotd := replies(base, 300, 3000, 6, 17, "10.1.0.10", 480)
	// The same four hosts answer on time and daytime: four reflectors.
	mixed := append(replies(base, 150, 1500, 4, 37, "10.1.0.20", 4),
		replies(base.Add(time.Millisecond), 150, 1500, 4, 13, "10.1.0.20", 26)...)
	slices.SortStableFunc(mixed, func(a, b *capture.Packet) int { return a.Timestamp.Compare(b.Timestamp) })
	var out []*capture.Packet
	for i := range 3000 {
		ts := at(time.Duration(i) * time.Millisecond)
		srv := fmt.Sprintf("10.1.2.%d:%d", 1+i%2, []int{19, 7}[i%2])
		out = append(out, udp(ts, "81.2.0.9:5353", srv, []byte{'\n'}),
			udp(ts.Add(100*time.Microsecond), srv, "81.2.0.9:5353", make([]byte, 64)))
	}
	for _, tc := range []struct {
		name    string
		ps      []*capture.Packet
		sid     uint32
		sig     string
		text    string
		advice  string
		service []string
	}{
		{"qotd", qotd, SIDReflection, "ECHOWATCH qotd reflection toward victim",
			"] qotd reflection start victim 10.1.0.10 from 6 reflectors busiest 45.33.1.1:17 ",
			"Filter UDP from source port 17 toward the victim at the edge or ask your upstream to; " +
				"the reflectors should disable qotd.",
			[]string{"qotd"}},
		{"daytime and time", mixed, SIDReflection, "ECHOWATCH daytime+time reflection toward victim",
			"] daytime+time reflection start victim 10.1.0.20 from 4 reflectors busiest ",
			"Filter UDP from source ports 13 and 37 toward the victim at the edge or ask your upstream to; " +
				"the reflectors should disable daytime and time.",
			[]string{"daytime", "time"}},
		{"outbound echo and chargen", out, SIDReflectionOutbound, "ECHOWATCH echo+chargen reflection from our hosts",
			"] echo+chargen reflection start victim 81.2.0.9 from 2 reflectors busiest ",
			"Our hosts are reflecting traffic at the victim: disable echo and chargen (inetd/xinetd, " +
				"Windows Simple TCP/IP Services) on the listed reflectors and block TCP/UDP 7 and 19 at the perimeter.",
			[]string{"echo", "chargen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(tc.ps...)
			h.flush()
			var got []*Alert
			for _, a := range h.out.alerts {
				if a.Kind() == KindReflection {
					got = append(got, a)
				}
			}
			if len(got) != 2 {
				t.Fatalf("alerts %q", h.out.summary())
			}
			a := got[0]
			table, _ := LookupSignature(tc.sid)
			if a.Signature.ID != tc.sid || a.Signature.Rev != table.Rev || a.Signature.Msg != tc.sig ||
				a.Incident.Advice != tc.advice || !slices.Equal(a.Incident.Services, tc.service) {
				t.Errorf("sid %d rev %d %q\nadvice %q\nservices %q", a.Signature.ID, a.Signature.Rev, a.Signature.Msg,
					a.Incident.Advice, a.Incident.Services)
			}
			if line := string(a.AppendText(nil)); !strings.Contains(line, tc.text) {
				t.Errorf("text %q lacks %q", line, tc.text)
			}
			if eve := string(a.AppendEVE(nil)); !strings.Contains(eve, `"signature":"`+tc.sig+`"`) {
				t.Errorf("EVE %s", eve)
			}
		})
	}
}

func TestReflectionSignaturesBounded(t *testing.T) {
	// The named signatures are shared per set of services, and a sensor
	// watching many ports keeps at most maxNamed of them.
	h := newHarness(t, homeConfig())
	d := builtin[*Reflection](h.eng)
	var a, b portList
	a.add(19)
	a.add(7)
	b.add(7)
	b.add(19)
	if d.signature(SIDReflection, &a) != d.signature(SIDReflection, &b) {
		t.Error("one set of services, two signatures")
	}
	if s := d.signature(SIDReflection, &portList{}); s != sig(SIDReflection) {
		t.Errorf("no services: %q", s.Msg)
	}
	for p := range uint16(3 * maxNamed) {
		var l portList
		l.add(1000 + p)
		s := d.signature(SIDReflectionPrefix, &l)
		if want := fmt.Sprintf("ECHOWATCH port %d reflection toward prefix (carpet bombing)", 1000+p); s.Msg != want {
			t.Fatalf("%q, want %q", s.Msg, want)
		}
		if len(d.named) > maxNamed {
			t.Fatalf("%d named signatures", len(d.named))
		}
	}
}
