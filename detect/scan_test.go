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
		{"nmap 7.93 udp", 40, []int{7}, udpProbe("\r\n\r\n"), []string{"scan/start/9000006 UDP/81.2.0.66"}, "nmap"},
		{"nmap 7.94 udp", 40, []int{7}, udpProbe("help\r\n\r\n"), []string{"scan/start/9000006 UDP/81.2.0.66"}, "nmap"},
		{"empty udp", 25, []int{7, 19}, udpProbe(""), []string{"scan/start/9000006 UDP/81.2.0.66"}, "unknown"},
		{"tcp syn", 36, []int{7, 19}, syn, []string{"scan/start/9000007 TCP/81.2.0.66"}, "unknown"},
		{"19 hosts", 19, []int{7}, udpProbe(""), nil, ""},
		{"other port", 40, []int{9}, udpProbe(""), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(sweep(base, "81.2.0.66", tt.hosts, tt.ports, tt.mk)...)
			h.flush()
			h.expect(tt.want...)
			if len(tt.want) == 0 {
				return
			}
			a := h.out.alerts[0]
			var ports []uint16
			for _, p := range tt.ports {
				ports = append(ports, uint16(p))
			}
			if a.Incident.Targets != 20 || a.Incident.Tool != tt.tool || !slices.Equal(a.Incident.Ports, ports) ||
				a.Incident.Direction != "inbound" || a.Severity != 3 {
				t.Errorf("targets %d tool %s ports %v direction %s", a.Incident.Targets, a.Incident.Tool, a.Incident.Ports, a.Incident.Direction)
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
	// A fast sweep raises it; a second one 30 min later does not; one 2 h
	// later does.
	for _, start := range []time.Duration{10 * time.Minute, 40 * time.Minute, 160 * time.Minute} {
		h.feed(sweep(at(start), "81.2.0.66", 30, []int{7}, slow)...)
	}
	h.expect("scan/start/9000006 UDP/81.2.0.66", "scan/start/9000006 UDP/81.2.0.66")
	if h.out.alerts[0].Incident.ID == h.out.alerts[1].Incident.ID {
		t.Error("re-armed scan kept its id")
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
