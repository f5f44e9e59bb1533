package detect

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// merged returns the packets of every list in time order.
func merged(lists ...[]*capture.Packet) []*capture.Packet {
	var all []*capture.Packet
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.SortStableFunc(all, func(a, b *capture.Packet) int { return a.Timestamp.Compare(b.Timestamp) })
	return all
}

// phases counts the alerts of kind k by key and phase.
func (h *harness) phases(k Kind) map[string][NumPhases]int {
	n := map[string][NumPhases]int{}
	for _, a := range h.out.alerts {
		if a.Kind() == k {
			c := n[a.Key()]
			c[a.Phase()]++
			n[a.Key()] = c
		}
	}
	return n
}

func TestReconfigureKeepsState(t *testing.T) {
	h := newHarness(t, homeConfig())
	// 10 s of reflection toward .10: an incident opens.
	h.feed(reflected(base, 800, 8000, 12, "10.1.0.10")...)
	if got := h.phases(KindReflection); got["10.1.0.10"][PhaseStart] != 1 {
		t.Fatalf("before reload: %v", got)
	}

	cfg := homeConfig()
	cfg.Reflection.PPS, cfg.Reflection.BPS = 500, 1e9
	cfg.Reflection.Allow = []string{"10.1.0.30"}
	cfg.SensorName = "reloaded"
	if err := h.eng.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	// 80 s more: .10 goes on above the new threshold, .20 gets what
	// crossed the old one but not the new one, .30 is now allowed.
	later := at(10 * time.Second)
	h.feed(merged(
		reflected(later, 800, 64000, 12, "10.1.0.10"),
		reflected(later, 200, 16000, 12, "10.1.0.20"),
		reflected(later, 800, 64000, 12, "10.1.0.30"),
	)...)
	h.flush()

	got := h.phases(KindReflection)
	if len(got) != 1 {
		t.Errorf("incidents after reload: %v, want only 10.1.0.10's", got)
	}
	ten := got["10.1.0.10"]
	if ten[PhaseStart] != 1 || ten[PhaseUpdate] < 1 || ten[PhaseEnd] != 1 {
		t.Errorf("10.1.0.10: %v starts/updates/ends, want one start, updates, one end", ten)
	}
	var id string
	for _, a := range h.out.alerts {
		if a.Kind() != KindReflection {
			continue
		}
		if id == "" {
			id = a.Incident.ID
		} else if a.Incident.ID != id {
			t.Errorf("%s alert of another incident %s, want %s", a.Phase(), a.Incident.ID, id)
		}
		if a.Phase() != PhaseStart && a.Host != "reloaded" {
			t.Errorf("%s alert: host %q, want the reloaded sensor_name", a.Phase(), a.Host)
		}
	}
	if end := h.out.alerts[len(h.out.alerts)-1].Incident; end.Packets != 72000 {
		t.Errorf("end: %d packets, want the 72000 of both configs", end.Packets)
	}
}

func TestReconfigureRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"invalid", func(c *Config) { c.Reflection.PPS = -1 }, "detect: reflection.pps: must be positive"},
		{"bad allow", func(c *Config) { c.Scan.Allow = []string{"nope"} }, "detect: scan.allow:"},
		{"capacity", func(c *Config) { c.Reflection.MaxVictims = 5 },
			"detect: reflection.max_victims: cannot change while running (restart to resize)"},
		{"window", func(c *Config) { c.Loop.Window = time.Minute }, "detect: loop.window: cannot change while running"},
		{"prefix", func(c *Config) { c.Reflection.PrefixV4 = 16 }, "detect: reflection.prefix_v4: cannot change while running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, homeConfig())
			cfg := homeConfig()
			cfg.Reflection.PPS = 10_000 // would silence the attack below if taken
			tc.edit(&cfg)
			err := h.eng.Reconfigure(cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Reconfigure: %v, want %q", err, tc.want)
			}
			h.feed(reflected(base, 800, 8000, 12, "10.1.0.10")...)
			h.flush()
			h.expect("reflection/start/9000001 10.1.0.10", "reflection/end/9000001 10.1.0.10")
		})
	}
}

func TestReconfigureFewerPorts(t *testing.T) {
	// Dropping a port, then taking it back, is no new port.
	h := newHarness(t, homeConfig())
	cfg := homeConfig()
	cfg.Reflection.Ports = []uint16{19}
	if err := h.eng.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	h.feed(every(base, 800, 8000, func(i int, ts time.Time) *capture.Packet {
		return udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%12), "10.1.0.10:40000", make([]byte, 100))
	})...)
	if len(h.out.alerts) != 0 {
		t.Fatalf("echo reflection with only chargen watched: %q", h.out.summary())
	}
	if err := h.eng.Reconfigure(homeConfig()); err != nil {
		t.Fatal(err)
	}
}

// TestReconfigureNewPorts adds ports while running: a port no detector
// watched (so Wants, the flow table and the loop set never saw its
// packets) and every port for spoofed floods. Both are seen from the next
// packet.
func TestReconfigureNewPorts(t *testing.T) {
	start := homeConfig()
	start.Reflection.Ports = []uint16{19}
	start.Loop.Ports = []uint16{19}
	start.Scan.Ports, start.Exposed.Ports, start.SpoofedFlood.Ports = []uint16{19}, []uint16{19}, []uint16{19}
	h := newHarness(t, start)
	echoRefl := func(from time.Time) []*capture.Packet {
		return every(from, 800, 8000, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, fmt.Sprintf("45.33.0.%d:7", 1+i%12), "10.1.0.10:40000", make([]byte, 100))
		})
	}
	// Land packets (source = destination) to port 80: forged, a flood.
	land := func(from time.Time) []*capture.Packet {
		return every(from, 500, 2500, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, "10.1.0.20:80", "10.1.0.20:80", make([]byte, 40))
		})
	}
	// A loop between two echo servers, which needs the flow of port 7.
	loop := func(from time.Time) []*capture.Packet {
		return every(from, 1000, 5000, func(i int, ts time.Time) *capture.Packet {
			if i%2 == 0 {
				return udp(ts, "10.1.0.30:7", "10.1.0.31:7", make([]byte, 60))
			}
			return udp(ts, "10.1.0.31:7", "10.1.0.30:7", make([]byte, 60))
		})
	}
	h.feed(echoRefl(base)...)
	h.feed(land(base.Add(20 * time.Second))...)
	h.feed(loop(base.Add(30 * time.Second))...)
	if len(h.out.alerts) != 0 {
		t.Fatalf("alerts on ports not watched: %q", h.out.summary())
	}
	all := homeConfig()
	all.SpoofedFlood.Ports = nil
	if err := h.eng.Reconfigure(all); err != nil {
		t.Fatal(err)
	}
	later := base.Add(5 * time.Minute)
	h.feed(echoRefl(later)...)
	h.feed(land(later.Add(20 * time.Second))...)
	h.feed(loop(later.Add(30 * time.Second))...)
	h.flush()
	for _, k := range []Kind{KindReflection, KindSpoofedFlood, KindLoop} {
		if got := h.phases(k); len(got) != 1 {
			t.Errorf("%s after the ports were added: %v, want one incident", k, got)
		}
	}
}

// TestInterestingFollowsReconfigure: the ports the decoder's pre-filter
// asks about are the ones in force, from the packet after a reload on, and
// every port once a detector watches them all.
func TestInterestingFollowsReconfigure(t *testing.T) {
	only := func(port uint16) Config {
		c := homeConfig()
		c.Reflection.Ports, c.Loop.Ports, c.Scan.Ports = []uint16{port}, []uint16{port}, []uint16{port}
		c.Exposed.Ports, c.SpoofedFlood.Ports = []uint16{port}, []uint16{port}
		return c
	}
	h := newHarness(t, only(19))
	check := func(when string, want map[[2]uint16]bool) {
		t.Helper()
		for ports, w := range want {
			if got := h.eng.Interesting(ports[0], ports[1]); got != w {
				t.Errorf("%s: Interesting(%d, %d) = %v, want %v", when, ports[0], ports[1], got, w)
			}
		}
	}
	check("chargen only", map[[2]uint16]bool{{40000, 19}: true, {19, 40000}: true, {40000, 7}: false, {40000, 80}: false})
	if err := h.eng.Reconfigure(only(7)); err != nil {
		t.Fatal(err)
	}
	check("echo only", map[[2]uint16]bool{{40000, 19}: false, {7, 40000}: true, {40000, 7}: true, {40000, 80}: false})
	every := only(7)
	every.SpoofedFlood.Ports = []uint16{}
	if err := h.eng.Reconfigure(every); err != nil {
		t.Fatal(err)
	}
	check("every port", map[[2]uint16]bool{{40000, 19}: true, {40000, 7}: true, {40000, 80}: true, {1, 2}: true})
}
