package report

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/sensor"
)

var t0 = time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func mustSig(t *testing.T, sid uint32) *detect.Signature {
	t.Helper()
	s, ok := detect.LookupSignature(sid)
	if !ok {
		t.Fatalf("no signature %d", sid)
	}
	return s
}

// writeSynthetic feeds log the alerts of two incidents, a reflection
// (start, update, end, with rate samples between) and a loop (start, end),
// then a scan. Like the engine, it reuses one Alert for every call.
func writeSynthetic(t *testing.T, log *Log) {
	t.Helper()
	var a detect.Alert
	refl := func(phase detect.Phase, when time.Duration, last time.Duration, packets uint64, pps, peak float64, reflectors int) {
		a = detect.Alert{
			Time: at(when), Src: netip.MustParseAddrPort("192.0.2.217:7"), Dst: netip.MustParseAddrPort("198.51.100.10:0"),
			Proto: capture.ProtoUDP, Signature: mustSig(t, detect.SIDReflection), Severity: 2,
			Incident: detect.Incident{
				ID: "1400651e2c7ca222", Kind: detect.KindReflection, Phase: phase,
				FirstSeen: at(1002454 * time.Microsecond), LastSeen: at(last),
				Packets: packets, Bytes: packets * 74, PPS: pps, BPS: pps * 74 * 8, PeakPPS: peak, PeakBPS: peak * 74 * 8,
				Direction: "inbound", Victim: netip.MustParsePrefix("198.51.100.10/32"),
				Reflectors:     []detect.Reflector{{Addr: netip.MustParseAddr("192.0.2.217"), Port: 7, Packets: 13, Bytes: 962}},
				ReflectorCount: reflectors, Services: []string{"echo"},
			},
		}
		log.WriteAlert(&a)
	}
	loop := func(phase detect.Phase, when, last time.Duration, packets uint64, pps, peak float64) {
		a = detect.Alert{
			Time: at(when), Src: netip.MustParseAddrPort("198.51.100.7:7"), Dst: netip.MustParseAddrPort("198.51.100.19:19"),
			Proto: capture.ProtoUDP, Signature: mustSig(t, detect.SIDLoop), Severity: 2,
			Incident: detect.Incident{
				ID: "78f0a4db5dd433b8", Kind: detect.KindLoop, Phase: phase,
				FirstSeen: at(4 * time.Second), LastSeen: at(last),
				Packets: packets, Bytes: packets * 292, PPS: pps, BPS: pps * 292 * 8, PeakPPS: peak, PeakBPS: peak * 292 * 8,
				Direction: "internal",
				Endpoints: [2]netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:7"), netip.MustParseAddrPort("198.51.100.19:19")},
			},
		}
		log.WriteAlert(&a)
	}
	refl(detect.PhaseStart, 2496123*time.Microsecond, 2496123*time.Microsecond, 225, 50, 50, 30)
	loop(detect.PhaseStart, 4450112*time.Microsecond, 4450112*time.Microsecond, 20, 4.5, 4.5)
	log.IncidentRate("1400651e2c7ca222", detect.KindReflection, at(10*time.Second), 150.2, 150.2*74*8)
	log.IncidentRate("78f0a4db5dd433b8", detect.KindLoop, at(10*time.Second), 40.5, 40.5*292*8)
	refl(detect.PhaseUpdate, 62*time.Second, 61*time.Second, 5000, 120, 150.2, 31)
	loop(detect.PhaseEnd, 80*time.Second, 19425154*time.Microsecond, 619, 0, 40.5)
	refl(detect.PhaseEnd, 122*time.Second, 121500*time.Millisecond, 9000, 0, 150.2, 32)
	// What the engine does to its Alert after the call must not show.
	a.Incident.ID, a.Incident.Packets, a.Incident.Services[0] = "changed", 1, "changed"
}

func TestSummaryCollector(t *testing.T) {
	log := NewLog(2)
	writeSynthetic(t, log)
	// A third incident finds the log full: it is counted, not kept, and
	// so are its later alerts, once.
	scan := detect.Alert{Time: at(90 * time.Second), Src: netip.MustParseAddrPort("203.0.113.200:47295"),
		Proto: capture.ProtoUDP, Signature: mustSig(t, detect.SIDScanUDP), Severity: 3,
		Incident: detect.Incident{ID: "c7f2a4e54a64ced0", Kind: detect.KindScan, Phase: detect.PhaseStart,
			FirstSeen: at(89 * time.Second), LastSeen: at(90 * time.Second), Targets: 20, Ports: []uint16{7}, Tool: "nmap"}}
	log.WriteAlert(&scan)
	scan.Incident.Phase = detect.PhaseUpdate
	log.WriteAlert(&scan)
	log.IncidentRate("c7f2a4e54a64ced0", detect.KindScan, at(91*time.Second), 1, 1)

	if got := log.Dropped(); got != 1 {
		t.Errorf("dropped %d incidents, want 1", got)
	}
	if got := log.Count(); got != 3 {
		t.Errorf("count() = %d, want 3 (two kept, one dropped)", got)
	}
	incs := log.incidents()
	if len(incs) != 2 {
		t.Fatalf("kept %d incidents, want 2", len(incs))
	}
	r, l := incs[0], incs[1]
	if r.ID != "1400651e2c7ca222" || l.ID != "78f0a4db5dd433b8" {
		t.Fatalf("incidents in order %s, %s; want the reflection (first seen 1 s) then the loop (4 s)", r.ID, l.ID)
	}
	wantR := incidentSummary{
		ID: "1400651e2c7ca222", Kind: detect.KindReflection, Key: "198.51.100.10", SID: detect.SIDReflection,
		Severity: 2, Direction: "inbound", Phase: detect.PhaseEnd, Proto: capture.ProtoUDP, Alerts: 3,
		LastAlert: at(122 * time.Second), FirstSeen: at(1002454 * time.Microsecond), LastSeen: at(121500 * time.Millisecond),
		Packets: 9000, Bytes: 9000 * 74, PeakPPS: 150.2, PeakBPS: 150.2 * 74 * 8,
		Headline: detect.Headline{Detail: "32 reflectors", ReflectorCount: new(32)},
	}
	wantRates := []ratePoint{
		{at(2496123 * time.Microsecond), 50, 50 * 74 * 8},
		{at(10 * time.Second), 150.2, 150.2 * 74 * 8},
		{at(62 * time.Second), 120, 120 * 74 * 8},
		{at(122 * time.Second), 0, 0},
	}
	if !slices.Equal(r.Rates, wantRates) {
		t.Errorf("reflection rates %v, want %v", r.Rates, wantRates)
	}
	r.Rates = nil
	if !reflect.DeepEqual(r, wantR) {
		t.Errorf("reflection\n got %+v\nwant %+v", r, wantR)
	}
	if l.Key != "198.51.100.7:7-198.51.100.19:19" || l.Phase != detect.PhaseEnd || l.Packets != 619 ||
		l.PeakPPS != 40.5 || l.Duration() != 15425154*time.Microsecond || len(l.Rates) != 3 {
		t.Errorf("loop %+v", l)
	}
	if got := l.detail(); got != "ports 7 <-> 19" {
		t.Errorf("loop detail %q", got)
	}
}

// TestSummaryRateSeries checks the downsampling: when full, pairs merge
// into their busier point, and later samples arrive merged as much.
func TestSummaryRateSeries(t *testing.T) {
	var s rateSeries
	pps := []float64{1, 5, 2, 3, 9, 1, 1, 1, 7, 2}
	for i, v := range pps {
		s.add(ratePoint{t: at(time.Duration(i) * time.Second), pps: v}, 4)
	}
	got := s.points()
	want := []ratePoint{{t: at(1 * time.Second), pps: 5}, {t: at(4 * time.Second), pps: 9}, {t: at(8 * time.Second), pps: 7}}
	if !slices.Equal(got, want) {
		t.Errorf("points %v, want %v", got, want)
	}
	if s.stride != 4 {
		t.Errorf("stride %d, want 4", s.stride)
	}

	// However many samples, a series stays within its bound.
	var long rateSeries
	for i := range 100000 {
		long.add(ratePoint{t: at(time.Duration(i) * time.Second), pps: float64(i % 977)}, defaultMaxPoints)
	}
	if n := len(long.points()); n > defaultMaxPoints || n < defaultMaxPoints/4 {
		t.Errorf("%d points kept of 100000, want at most %d and not far below", n, defaultMaxPoints)
	}
}

// TestSummaryPointBudget checks that many incidents share the point budget.
func TestSummaryPointBudget(t *testing.T) {
	log := NewLog(defaultMaxIncidents)
	var a detect.Alert
	a.Signature = mustSig(t, detect.SIDSpoofedFlood)
	for i := range defaultMaxIncidents {
		a.Incident = detect.Incident{ID: "flood-" + strconv.Itoa(i),
			Kind: detect.KindSpoofedFlood, Phase: detect.PhaseStart, FirstSeen: at(0), LastSeen: at(0)}
		log.WriteAlert(&a)
	}
	for s := range 3000 {
		for i := 0; i < defaultMaxIncidents; i += 1000 {
			log.sample("flood-"+strconv.Itoa(i), at(time.Duration(s)*time.Second), float64(s), 0)
		}
	}
	total := 0
	for _, in := range log.incidents() {
		total += len(in.Rates)
	}
	if total > log.points {
		t.Errorf("%d points kept, more than the budget of %d", total, log.points)
	}
	if n := len(log.incidents()[0].Rates); n > pointsPerIncident {
		t.Errorf("an incident keeps %d points, want at most %d with the log full", n, pointsPerIncident)
	}
}

func TestSummaryTable(t *testing.T) {
	log := NewLog(2)
	writeSynthetic(t, log)
	var a detect.Alert
	a.Signature = mustSig(t, detect.SIDScanUDP)
	a.Incident = detect.Incident{ID: "c7f2a4e54a64ced0", Kind: detect.KindScan, Phase: detect.PhaseStart}
	log.WriteAlert(&a) // dropped: the log keeps two

	var b bytes.Buffer
	if err := log.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"KIND        KEY                              FIRST SEEN (UTC)         LAST SEEN     DURATION  PEAK PPS     PEAK BPS  PACKETS     BYTES  DETAIL\n" +
		"reflection  198.51.100.10                    2024-03-19 12:00:01.002  12:02:01.500     2m00s     150.2  88.9 kbit/s     9000  666.0 kB  32 reflectors\n" +
		"loop        198.51.100.7:7-198.51.100.19:19  2024-03-19 12:00:04.000  12:00:19.425     15.4s      40.5  94.6 kbit/s      619  180.7 kB  ports 7 <-> 19\n" +
		"2 incidents: 1 reflection, 1 loop\n" +
		"1 more incidents were not kept (the summary keeps 2)\n"
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}

	b.Reset()
	NewLog(0).WriteTable(&b)
	if got := b.String(); got != "0 incidents\n" {
		t.Errorf("empty table %q", got)
	}
}

func TestSummaryJSON(t *testing.T) {
	log := NewLog(0)
	writeSynthetic(t, log)
	a := detect.Alert{Time: at(90 * time.Second), Src: netip.MustParseAddrPort("203.0.113.200:47295"),
		Proto: capture.ProtoUDP, Signature: mustSig(t, detect.SIDScanUDP), Severity: 3,
		Incident: detect.Incident{ID: "c7f2a4e54a64ced0", Kind: detect.KindScan, Phase: detect.PhaseStart,
			FirstSeen: at(89 * time.Second), LastSeen: at(89479 * time.Millisecond), Packets: 20, Bytes: 1200,
			PPS: 20, BPS: 9600, PeakPPS: 20, PeakBPS: 9600, Direction: "unknown",
			Targets: 20, Ports: []uint16{7, 19}, Tool: "nmap"}}
	log.WriteAlert(&a)
	a = detect.Alert{Time: at(91 * time.Second), Src: netip.MustParseAddrPort("198.51.100.7:7"),
		Proto: capture.ProtoUDP, Signature: mustSig(t, detect.SIDExposedUDP), Severity: 3,
		Incident: detect.Incident{ID: "d6f620360c3ec781", Kind: detect.KindExposed, Phase: detect.PhaseStart,
			FirstSeen: at(90 * time.Second), LastSeen: at(90*time.Second + 597*time.Microsecond), Packets: 2, Bytes: 120,
			Direction: "outbound", Service: "echo"}}
	log.WriteAlert(&a)

	var b bytes.Buffer
	if err := log.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	want := `[
  {
    "id": "1400651e2c7ca222",
    "kind": "reflection",
    "key": "198.51.100.10",
    "signature_id": 9000001,
    "severity": 2,
    "direction": "inbound",
    "phase": "end",
    "first_seen": "2024-03-19T12:00:01.002454+0000",
    "last_seen": "2024-03-19T12:02:01.500000+0000",
    "duration": 120.498,
    "peak_pps": 150.2,
    "peak_bps": 88918.4,
    "packets": 9000,
    "bytes": 666000,
    "alerts": 3,
    "reflector_count": 32
  },
  {
    "id": "78f0a4db5dd433b8",
    "kind": "loop",
    "key": "198.51.100.7:7-198.51.100.19:19",
    "signature_id": 9000004,
    "severity": 2,
    "direction": "internal",
    "phase": "end",
    "first_seen": "2024-03-19T12:00:04.000000+0000",
    "last_seen": "2024-03-19T12:00:19.425154+0000",
    "duration": 15.425,
    "peak_pps": 40.5,
    "peak_bps": 94608,
    "packets": 619,
    "bytes": 180748,
    "alerts": 2,
    "endpoints": [
      "198.51.100.7:7",
      "198.51.100.19:19"
    ]
  },
  {
    "id": "c7f2a4e54a64ced0",
    "kind": "scan",
    "key": "UDP/203.0.113.200",
    "signature_id": 9000006,
    "severity": 3,
    "direction": "unknown",
    "phase": "start",
    "first_seen": "2024-03-19T12:01:29.000000+0000",
    "last_seen": "2024-03-19T12:01:29.479000+0000",
    "duration": 0.479,
    "peak_pps": 20,
    "peak_bps": 9600,
    "packets": 20,
    "bytes": 1200,
    "alerts": 1,
    "targets": 20,
    "ports": [
      7,
      19
    ],
    "tool": "nmap"
  },
  {
    "id": "d6f620360c3ec781",
    "kind": "exposed",
    "key": "UDP/198.51.100.7:7",
    "signature_id": 9000008,
    "severity": 3,
    "direction": "outbound",
    "phase": "start",
    "first_seen": "2024-03-19T12:01:30.000000+0000",
    "last_seen": "2024-03-19T12:01:30.000597+0000",
    "duration": 0.001,
    "peak_pps": 0,
    "peak_bps": 0,
    "packets": 2,
    "bytes": 120,
    "alerts": 1,
    "service": "echo"
  }
]
`
	if got := b.String(); got != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", got, want)
	}

	b.Reset()
	NewLog(0).WriteJSON(&b)
	if got := b.String(); got != "[]\n" {
		t.Errorf("empty summary %q, want an empty array", got)
	}
}

func TestSummaryFormats(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{FormatCount(0), "0.0"},
		{FormatCount(150.24), "150.2"},
		{FormatCount(9999.9), "9999.9"},
		{FormatCount(12345), "12.3k"},
		{FormatCount(999960), "1.0M"},
		{formatBits(0), "0.0 bit/s"},
		{formatBits(88918.4), "88.9 kbit/s"},
		{formatBits(1e10), "10.0 Gbit/s"},
		{FormatBytes(812), "812 B"},
		{FormatBytes(166500), "166.5 kB"},
		{FormatBytes(1 << 30), "1.1 GB"},
		{formatDuration(479 * time.Millisecond), "0.4s"},
		{formatDuration(15425 * time.Millisecond), "15.4s"},
		{formatDuration(123 * time.Second), "2m03s"},
		{formatDuration(62 * time.Minute), "1h02m"},
		{formatDuration(76 * time.Hour), "3d04h"},
		{printable("a\x1b[2Jb\xff"), "a?[2Jb?"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// demoLog runs the demo capture through the sensor with a Log as its
// Observer, as main does for --summary and --report; first and last are
// the capture's first and latest frame times.
func demoLog(t *testing.T) (log *Log, first, last time.Time) {
	t.Helper()
	path := filepath.Join("..", "..", "pcaps", "demo.pcap")
	src, err := capture.OpenFiles([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var f capture.Frame
	if err := src.ReadFrame(&f); err != nil {
		t.Fatal(err)
	}
	first = f.Timestamp
	src.Close()

	log = NewLog(0)
	sc := sensor.Config{Workers: 1, Observer: log}
	engine, err := detect.New(detect.DefaultConfig(), discard{})
	if err != nil {
		t.Fatal(err)
	}
	if src, err = capture.OpenFiles([]string{path}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := sensor.New(sc, []capture.Source{src}, engine)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return log, first, s.Stats().Last
}

type discard struct{}

func (discard) WriteAlert(*detect.Alert) {}

// TestSummaryDemo checks the summary of a real run against the alerts
// echowatch prints for the same capture.
func TestSummaryDemo(t *testing.T) {
	log, _, _ := demoLog(t)
	var b bytes.Buffer
	log.WriteTable(&b)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 6 || lines[5] != "4 incidents: 1 reflection, 1 loop, 1 scan, 1 exposed" {
		t.Fatalf("demo summary:\n%s", b.String())
	}
	for i, prefix := range []string{"KIND ", "reflection  198.51.100.10 ", "loop ", "scan ", "exposed "} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d %q, want it to start with %q", i+1, lines[i], prefix)
		}
	}
	// The scan's end speaks for it: the 30 hosts of the whole sweep.
	for _, s := range []string{"150.0", "88.8 kbit/s", "2250", "30 reflectors", "30 targets, nmap", " echo"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("demo summary lacks %q:\n%s", s, b.String())
		}
	}
}

// TestIncidentLogCost fills a log the costliest way: incidents that come
// one after another with long keys, ports and an evidence file, each
// sampled as long as its share of the point budget lets it grow before the
// next comes. What the heap grew by, per incident, must be at most the
// cost by which max_memory sizes the log (incidentBytes).
func TestIncidentLogCost(t *testing.T) {
	const n = 4096
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	before := heap()
	log := NewLog(n)
	var a detect.Alert
	a.Signature = mustSig(t, detect.SIDLoop)
	for i := range n {
		a.Src = netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff:ffff:ffff:ffff:ffff:%x", i)), 65535)
		a.Dst = netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8:eeee:eeee:eeee:eeee:eeee:%x", i)), 65535)
		a.CaptureFile = fmt.Sprintf("/var/lib/echowatch/evidence/%016x.pcap", i)
		a.Incident = detect.Incident{ID: fmt.Sprintf("%016x", i), Kind: detect.KindLoop, Phase: detect.PhaseStart,
			FirstSeen: at(0), LastSeen: at(0), Endpoints: [2]netip.AddrPort{a.Src, a.Dst},
			Ports: []uint16{1, 2, 3, 4, 5, 6, 7, 8}, Direction: "inbound"}
		log.WriteAlert(&a)
		for s := range log.limit() {
			log.sample(a.Incident.ID, at(time.Duration(s)*time.Second), float64(s), 0)
		}
	}
	per := (heap() - before) / n
	runtime.KeepAlive(log)
	t.Logf("%d bytes per incident (documented %d)", per, incidentBytes)
	if per > incidentBytes {
		t.Errorf("an incident takes %d bytes, more than the %d documented", per, incidentBytes)
	}
}
