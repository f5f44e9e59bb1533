package detect

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// sweep returns probes from scanner to hosts 10.1.0.1..n on each port,
// ten per second.
func sweep(start time.Time, scanner string, n int, ports []int, mk func(ts time.Time, src, dst string) *capture.Packet) []*capture.Packet {
	var ps []*capture.Packet
	for i := range n {
		for j, port := range ports {
			ts := start.Add(time.Duration(i*len(ports)+j) * 100 * time.Millisecond)
			ps = append(ps, mk(ts, scanner+":45000", fmt.Sprintf("10.1.0.%d:%d", 1+i, port)))
		}
	}
	return ps
}

func TestScan(t *testing.T) {
	udpProbe := func(payload string) func(ts time.Time, src, dst string) *capture.Packet {
		return func(ts time.Time, src, dst string) *capture.Packet { return udp(ts, src, dst, []byte(payload)) }
	}
	syn := func(ts time.Time, src, dst string) *capture.Packet { return tcp(ts, src, dst, capture.TCPSyn, nil) }
	tests := []struct {
		name  string
		hosts int
		ports []int
		mk    func(ts time.Time, src, dst string) *capture.Packet
		want  []string
		tool  string
	}{
		{"nmap 7.93 udp", 40, []int{7}, udpProbe("\r\n\r\n"), []string{"scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66"}, "nmap"},
		{"nmap 7.94 udp", 40, []int{7}, udpProbe("help\r\n\r\n"), []string{"scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66"}, "nmap"},
		{"empty udp", 25, []int{7, 19}, udpProbe(""), []string{"scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66"}, "unknown"},
		{"tcp syn", 36, []int{7, 19}, syn, []string{"scan/start/9000007 TCP/81.2.0.66", "scan/end/9000007 TCP/81.2.0.66"}, "unknown"},
		{"19 hosts", 19, []int{7}, udpProbe(""), nil, ""},
		{"other port", 40, []int{9}, udpProbe(""), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			probes := sweep(base, "81.2.0.66", tt.hosts, tt.ports, tt.mk)
			h.feed(probes...)
			h.flush()
			h.expect(tt.want...)
			if len(tt.want) == 0 {
				return
			}
			var ports []uint16
			for _, p := range tt.ports {
				ports = append(ports, uint16(p))
			}
			a := h.out.alerts[0]
			if a.Incident.Targets != 20 || a.Incident.Tool != tt.tool || !slices.Equal(a.Incident.Ports, ports) ||
				a.Incident.Direction != "inbound" || a.Severity != 3 {
				t.Errorf("start: targets %d tool %s ports %v direction %s", a.Incident.Targets, a.Incident.Tool, a.Incident.Ports, a.Incident.Direction)
			}
			// The end, at the end of the input, has the whole sweep.
			last := probes[len(probes)-1].Timestamp
			end := h.out.alerts[1]
			if in := end.Incident; in.ID != a.Incident.ID || in.Targets != tt.hosts || in.Packets != uint64(len(probes)) ||
				!in.FirstSeen.Equal(base) || !in.LastSeen.Equal(last) || !end.Time.Equal(last) ||
				in.Tool != tt.tool || !slices.Equal(in.Ports, ports) || in.PeakPPS < in.PPS {
				t.Errorf("end at %v: %+v", end.Time, in)
			}
		})
	}
}

func TestScanWindowAndRearm(t *testing.T) {
	h := newHarness(t, homeConfig())
	// 20 hosts over 100 s is too slow for 60 s.
	slow := func(ts time.Time, src, dst string) *capture.Packet { return udp(ts, src, dst, nil) }
	for _, p := range sweep(base, "81.2.0.66", 20, []int{7}, slow) {
		p.Timestamp = base.Add(p.Timestamp.Sub(base) * 50) // 5 s apart
		h.feed(p)
	}
	h.expect()
	// A fast sweep raises it; a second one 30 min later is counted in it;
	// the scan ends an hour after it was raised, noticed at the next
	// packet of a capture, and a sweep 2 h later is a new scan.
	for _, start := range []time.Duration{10 * time.Minute, 40 * time.Minute, 160 * time.Minute} {
		h.feed(sweep(at(start), "81.2.0.66", 30, []int{7}, slow)...)
	}
	h.flush()
	h.expect("scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66",
		"scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66")
	first, end := h.out.alerts[0], h.out.alerts[1]
	if first.Incident.ID == h.out.alerts[2].Incident.ID || end.Incident.ID != first.Incident.ID {
		t.Error("a re-armed scan kept its id, or an end lost it")
	}
	// Both sweeps, from the first probe of the fast one: the 30 hosts
	// probed again after a quiet window count again.
	if in := end.Incident; !end.Time.Equal(at(160*time.Minute)) || !in.FirstSeen.Equal(at(10*time.Minute)) ||
		!in.LastSeen.Equal(at(40*time.Minute+2900*time.Millisecond)) || in.Packets != 60 || in.Targets != 60 {
		t.Errorf("end at %v: %+v", end.Time, in)
	}
}

// TestScanEndsAtRearm: a scan ends when its rearm time has passed, in
// packet time, with what the scanner sent until then; quiet time counts
// on Tick, as a live sensor ticks.
func TestScanEndsAtRearm(t *testing.T) {
	cfg := homeConfig()
	cfg.Scan.Rearm = 10 * time.Second
	h := newHarness(t, cfg)
	probe := func(ts time.Time, src, dst string) *capture.Packet { return udp(ts, src, dst, []byte("x")) }
	h.feed(sweep(base, "81.2.0.66", 50, []int{7}, probe)...) // 5 s: raised at 1.9 s
	for s := 5; s <= 12; s++ {
		h.eng.Tick(at(time.Duration(s) * time.Second))
	}
	h.expect("scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66")
	end := h.out.alerts[1]
	if in := end.Incident; !end.Time.Equal(at(12*time.Second)) || in.Targets != 50 || in.Packets != 50 ||
		in.Bytes != 50*43 || !in.LastSeen.Equal(at(4900*time.Millisecond)) {
		t.Errorf("end at %v: %+v", end.Time, in)
	}
	if st := h.eng.Stats(); st.Open != 0 || st.Kinds[KindScan].Phases != [NumPhases]uint64{1, 0, 1} {
		t.Errorf("stats: open %d, scan phases %v", st.Open, st.Kinds[KindScan].Phases)
	}
	// The scanner goes on: a new scan once it has swept enough again.
	h.feed(sweep(at(20*time.Second), "81.2.0.66", 25, []int{7}, probe)...)
	h.flush()
	h.expect("scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66",
		"scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66")
	if in := h.out.alerts[3].Incident; in.Targets != 25 || !in.FirstSeen.Equal(at(20*time.Second)) {
		t.Errorf("second scan: %+v", in)
	}
}

// TestScanEvicted: a scanner pushed out of the full table while its scan
// is open ends it there, with what it had, as a flow table that evicts
// a flow ends it.
func TestScanEvicted(t *testing.T) {
	cfg := homeConfig()
	cfg.Scan.MaxScanners = 1
	h := newHarness(t, cfg)
	probe := func(ts time.Time, src, dst string) *capture.Packet { return udp(ts, src, dst, nil) }
	h.feed(sweep(base, "81.2.0.66", 25, []int{7}, probe)...)
	h.feed(sweep(at(3*time.Second), "81.2.0.67", 1, []int{7}, probe)...)
	h.expect("scan/start/9000006 UDP/81.2.0.66", "scan/end/9000006 UDP/81.2.0.66")
	if end := h.out.alerts[1]; !end.Time.Equal(at(3*time.Second)) || end.Incident.Targets != 25 {
		t.Errorf("end at %v: %+v", end.Time, end.Incident)
	}
	h.flush()
	if n := len(h.out.alerts); n != 2 || h.eng.Stats().Open != 0 {
		t.Errorf("%d alerts after the flush, %d open", n, h.eng.Stats().Open)
	}
}

func TestScanAllow(t *testing.T) {
	cfg := homeConfig()
	cfg.Scan.Allow = []string{"81.2.0.0/24"}
	h := newHarness(t, cfg)
	h.feed(sweep(base, "81.2.0.66", 40, []int{7}, func(ts time.Time, src, dst string) *capture.Packet {
		return udp(ts, src, dst, nil)
	})...)
	h.flush()
	h.expect()
}
