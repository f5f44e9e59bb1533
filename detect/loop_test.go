package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// pingPong returns count datagrams alternating between a and b, the first
// from a, at rate packets per second in total.
func pingPong(start time.Time, rate float64, count int, a, b string, size int) []*capture.Packet {
	return every(start, rate, count, func(i int, ts time.Time) *capture.Packet {
		if i%2 == 0 {
			return udp(ts, a, b, make([]byte, size))
		}
		return udp(ts, b, a, make([]byte, size))
	})
}

func TestLoop(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		rate float64
		want []string
	}{
		{"echo-chargen", "10.1.0.19:19", "10.1.0.7:7", 40, []string{
			"loop/start/9000004 10.1.0.7:7-10.1.0.19:19",
			"loop/end/9000004 10.1.0.7:7-10.1.0.19:19",
		}},
		{"echo-echo IPv6", "[2001:db8:200::7]:7", "[2001:db8:100::7]:7", 40, []string{
			"loop/start/9000004 [2001:db8:100::7]:7-[2001:db8:200::7]:7",
			"loop/end/9000004 [2001:db8:100::7]:7-[2001:db8:200::7]:7",
		}},
		{"daytime-time", "10.1.0.13:13", "81.2.0.5:37", 100, []string{
			"loop/start/9000004 10.1.0.13:13-81.2.0.5:37",
			"loop/end/9000004 10.1.0.13:13-81.2.0.5:37",
		}},
		// Too slow: 2 packets/s each way, 10 per 5 s window... minus one.
		{"slow", "10.1.0.19:19", "10.1.0.7:7", 3.6, nil},
		// Legitimate peers on ports outside the loop set.
		{"ntp peers", "10.1.0.123:123", "81.2.0.123:123", 120, nil},
		{"dns", "10.1.0.53:53", "81.2.0.53:53", 120, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			h.feed(pingPong(base, tt.rate, int(tt.rate*20), tt.a, tt.b, 64)...)
			h.flush()
			h.expect(tt.want...)
		})
	}
}

func TestLoopDetails(t *testing.T) {
	h := newHarness(t, homeConfig())
	h.feed(pingPong(base, 40, 800, "10.1.0.19:19", "10.1.0.7:7", 64)...)
	h.flush()
	h.expect("loop/start/9000004 10.1.0.7:7-10.1.0.19:19", "loop/end/9000004 10.1.0.7:7-10.1.0.19:19")
	a := h.out.alerts[0]
	in := a.Incident
	// 10 packets each way: the 20th packet, at 20 pps each way, 0.475 s in.
	if in.Packets != 20 || in.Directions[0].Packets != 10 || in.Directions[1].Packets != 10 {
		t.Errorf("start: packets %d, each way %d/%d", in.Packets, in.Directions[0].Packets, in.Directions[1].Packets)
	}
	if a.Src.String() != "10.1.0.7:7" || a.Dst.String() != "10.1.0.19:19" || a.CommunityID == "" ||
		a.Incident.Direction != "internal" || in.Endpoints[0] != a.Src {
		t.Errorf("src %v dst %v community %q direction %s", a.Src, a.Dst, a.CommunityID, in.Direction)
	}
	if end := h.out.alerts[1].Incident; end.Packets != 800 || end.Directions[0].Packets != 400 {
		t.Errorf("end: packets %d", end.Packets)
	}
}

func TestLoopNeedsBothDirections(t *testing.T) {
	// A one-way flood from port 19 to port 7 with a new forged source per
	// packet is a random-source flood, not a loop.
	h := newHarness(t, homeConfig())
	h.feed(every(base, 300, 3000, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, fmt.Sprintf("81.2.%d.%d:19", i/250, i%250), "10.1.0.7:7", nil)
	})...)
	h.flush()
	h.expect("spoofed_flood/start/9000005 10.1.0.7", "spoofed_flood/end/9000005 10.1.0.7")
}

func TestLoopAllow(t *testing.T) {
	cfg := homeConfig()
	cfg.Loop.Allow = []string{"10.1.0.7"}
	h := newHarness(t, cfg)
	h.feed(pingPong(base, 40, 800, "10.1.0.19:19", "10.1.0.7:7", 64)...)
	h.flush()
	h.expect()
}
