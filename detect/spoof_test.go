package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

func TestSpoofedFlood(t *testing.T) {
	bogons := []string{"0.1.2.3", "10.9.8.7", "100.64.1.1", "127.0.0.1", "169.254.3.3",
		"172.16.5.5", "192.168.1.1", "224.0.0.5", "240.1.1.1"}
	tests := []struct {
		name string
		home []string
		mk   func(i int, ts time.Time) *capture.Packet
		want []string
	}{
		{"bogon sources", nil, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, bogons[i%len(bogons)]+":1234", "198.51.100.80:7", nil)
		}, []string{"spoofed_flood/start/9000005 198.51.100.80", "spoofed_flood/end/9000005 198.51.100.80"}},
		{"IPv6 bogon sources", nil, func(i int, ts time.Time) *capture.Packet {
			src := []string{"[::1]:9", "[ff02::1]:9", "[fe80::1]:9", "[fd00::5]:9", "[::ffff:10.0.0.1]:9"}[i%5]
			return udp(ts, src, "[2001:db8:80::80]:7", nil)
		}, []string{"spoofed_flood/start/9000005 2001:db8:80::80", "spoofed_flood/end/9000005 2001:db8:80::80"}},
		{"land", nil, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, "81.2.0.7:7", "81.2.0.7:7", nil)
		}, []string{"spoofed_flood/start/9000005 81.2.0.7", "spoofed_flood/end/9000005 81.2.0.7"}},
		{"private source from outside home_net", []string{"81.2.0.0/24"}, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, "10.0.0.1:1234", "81.2.0.7:19", nil)
		}, []string{"spoofed_flood/start/9000005 81.2.0.7", "spoofed_flood/end/9000005 81.2.0.7"}},
		{"private source inside home_net", []string{"10.0.0.0/8"}, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, fmt.Sprintf("10.0.0.%d:1234", i%3), "81.2.0.7:19", nil)
		}, nil},
		{"private to private", nil, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, fmt.Sprintf("10.0.0.%d:1234", i%3), "192.168.0.7:7", nil)
		}, nil},
		{"heavy legitimate clients", nil, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, fmt.Sprintf("81.2.0.%d:1234", i%50), "45.33.0.7:7", nil)
		}, nil},
		{"other ports", nil, func(i int, ts time.Time) *capture.Packet {
			return udp(ts, "127.0.0.1:1234", "45.33.0.7:53", nil)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.HomeNet = tt.home
			h := newHarness(t, cfg)
			h.feed(every(base, 150, 1500, tt.mk)...)
			h.flush()
			// Requests from a few real sources are reflection evidence
			// (forged requests into our reflectors): only floods count here.
			h.expectKind(KindSpoofedFlood, tt.want...)
		})
	}
}

func TestSpoofedFloodEvidence(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.feed(every(base, 200, 2000, func(i int, ts time.Time) *capture.Packet {
		if i%10 == 0 {
			return udp(ts, "198.51.100.80:7", "198.51.100.80:7", nil)
		}
		return udp(ts, "127.0.0.1:7000", "198.51.100.80:7", nil)
	})...)
	h.flush()
	h.expect("spoofed_flood/start/9000005 198.51.100.80", "spoofed_flood/end/9000005 198.51.100.80")
	ev := h.out.alerts[1].Incident.Evidence
	if ev.Bogon != 1800 || ev.Land != 200 || ev.RandomSource != 0 {
		t.Errorf("evidence %+v", ev)
	}
}

// randomSource returns a packet from a random routable IPv4 source.
func randomSource(rng *rand.Rand, ts time.Time, dst string) *capture.Packet {
	p := udp(ts, "45.0.0.1:1024", dst, make([]byte, 32))
	for {
		a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		if classify(a) == srcGlobal {
			p.Src, p.SrcPort = a, uint16(1024+rng.IntN(60000))
			return p
		}
	}
}

func TestForgedRequestFloodIntoEchoServer(t *testing.T) {
	// Forged requests from random sources into our echo server, which
	// answers one in four: a spoofed flood and an exposure, never a
	// reflection toward the forged sources.
	h := newHarness(t, homeConfig())
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 9000 { // 25 s at 360 pps
		ts := at(time.Duration(i) * time.Second / 360)
		req := randomSource(rng, ts, "10.1.0.77:7")
		h.feed(req)
		if i%4 == 0 {
			h.feed(udp(ts.Add(time.Millisecond), "10.1.0.77:7", req.SrcAddrPort().String(), make([]byte, 32)))
		}
	}
	h.flush()
	h.expect("exposed/start/9000008 UDP/10.1.0.77:7",
		"spoofed_flood/start/9000005 10.1.0.77", "exposed/end/9000008 UDP/10.1.0.77:7",
		"spoofed_flood/end/9000005 10.1.0.77")
	// The exposure took every forged request and answered one in four.
	if ex := h.out.alerts[2].Incident; ex.Requests != 9000 || ex.Replies != 2250 {
		t.Errorf("exposed: %d requests, %d replies", ex.Requests, ex.Replies)
	}
	// 9000 forged sources over the incident's 25 s.
	in := h.out.alerts[3].Incident
	if in.DistinctSources < 8100 || in.DistinctSources > 9900 || in.Evidence.RandomSource < 8000 || in.Direction != "inbound" {
		t.Errorf("distinct %d evidence %+v direction %s", in.DistinctSources, in.Evidence, in.Direction)
	}
}

func TestRandomSourceFloodBounded(t *testing.T) {
	// A million packets, each from a new random source, through small
	// tables: every table stays within its bound, and the flood is found.
	if testing.Short() {
		t.Skip("1M packets")
	}
	cfg := homeConfig()
	cfg.Reflection.MaxVictims = 1000
	cfg.Scan.MaxScanners = 1000
	cfg.SpoofedFlood.MaxTargets = 100
	out := &sink{}
	e, err := New(cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	flows, _ := NewFlows(FlowConfig{MaxFlows: 10_000, Ports: cfg.FlowPorts()})
	rng := rand.New(rand.NewPCG(3, 4))
	p := randomSource(rng, base, "10.1.0.77:7")
	for i := range 1_000_000 { // 20 s at 50k pps
		q := randomSource(rng, at(time.Duration(i)*20*time.Microsecond), "10.1.0.77:7")
		p.Timestamp, p.Src, p.SrcPort = q.Timestamp, q.Src, q.SrcPort
		f, dir := flows.Update(p)
		e.Packet(p, f, dir)
	}
	e.Flush(p.Timestamp)
	got := (&harness{out: out}).out.summary()
	if len(got) != 2 || got[0] != "spoofed_flood/start/9000005 10.1.0.77" {
		t.Fatalf("alerts %q", got)
	}
	for _, ts := range e.Stats().Tables {
		if ts.Len > ts.Cap {
			t.Errorf("%s: %d entries over its bound %d", ts.Name, ts.Len, ts.Cap)
		}
		t.Logf("%+v", ts)
	}
	// Past the first keys of each epoch, the admission sketch keeps the
	// forged sources out of the victim and scanner tables.
	for _, ts := range e.Stats().Tables {
		if (ts.Name == "reflection.victims" || ts.Name == "scan.scanners") && ts.Rejected < 900_000 {
			t.Errorf("%s admitted too much: %+v", ts.Name, ts)
		}
	}
}

// TestSpoofedFloodDistinctSources floods a target from n distinct routable
// sources, each sending one packet: the incident reports the distinct
// sources of the whole flood, not those of one window, within three
// standard errors of the HyperLogLog. The larger floods last 10 s, two
// windows; the smallest comes within one, as it must to cross the start
// threshold of 1000 sources in a window. The target was heard from
// before, so that its source memory has warmed up.
func TestSpoofedFloodDistinctSources(t *testing.T) {
	for _, n := range []int{2_000, 100_000, 5_000_000} {
		if n > 1_000_000 && testing.Short() {
			continue
		}
		out := &sink{}
		e, err := New(DefaultConfig(), out)
		if err != nil {
			t.Fatal(err)
		}
		span := 10 * time.Second
		if n < 10_000 {
			span = time.Second
		}
		// The target had one client before, so its memory is warm.
		p := udp(base, "45.0.0.1:1024", "198.51.100.77:7", make([]byte, 16))
		e.Packet(p, nil, FromOrig)
		p.Timestamp = at(9 * time.Second)
		e.Packet(p, nil, FromOrig)
		next := uint32(0)
		for i := range n {
			for p.Src = distinctAddr(next); !p.Src.Is4() || classify(p.Src) != srcGlobal; p.Src = distinctAddr(next) {
				next++
			}
			next++
			p.Timestamp = at(10*time.Second + time.Duration(i)*(span/time.Duration(n)))
			e.Packet(p, nil, FromOrig)
		}
		e.Flush(p.Timestamp)
		var end *Alert
		for _, a := range out.alerts {
			if a.Kind() == KindSpoofedFlood && a.Phase() == PhaseEnd {
				end = a
			}
		}
		if end == nil {
			t.Fatalf("%d sources: no spoofed_flood incident: %q", n, (&harness{out: out}).out.summary())
		}
		got := end.Incident.DistinctSources
		rel := float64(got-n-1) / float64(n+1)
		t.Logf("%d sources: %d distinct reported (%+.2f%%)", n, got, 100*rel)
		if math.Abs(rel) > 3*hllStdErr {
			t.Errorf("%d sources: %d distinct reported, beyond three standard errors", n, got)
		}
	}
}

// everyPort is DefaultConfig with every port watched for spoofed floods.
func everyPort() Config {
	cfg := DefaultConfig()
	cfg.SpoofedFlood.Ports = nil
	return cfg
}

// TestReturningClientsAreNoFlood: a server whose 3000 clients each send
// one packet every 3 s, within any 5 s window a random-source flood by
// its sources' counts, is none: they come back, from the first seconds
// on. A flood of new sources on the same server afterwards is one, found
// within its first window, with the flood's sources as its evidence.
func TestReturningClientsAreNoFlood(t *testing.T) {
	h := newHarness(t, everyPort())
	rng := rand.New(rand.NewPCG(5, 6))
	clients := make([]*capture.Packet, 3000)
	for i := range clients {
		clients[i] = randomSource(rng, base, "198.51.100.53:53")
	}
	var ps []*capture.Packet
	for i := range 10 * len(clients) { // 30 s
		c := *clients[i%len(clients)]
		c.Timestamp = at(time.Duration(i) * 30 * time.Second / time.Duration(10*len(clients)))
		ps = append(ps, &c)
	}
	h.feed(ps...)
	h.expectKind(KindSpoofedFlood)

	for i := range 5000 { // 5 s at 1000 pps from never-seen sources
		h.feed(randomSource(rng, at(30*time.Second+time.Duration(i)*time.Millisecond), "198.51.100.53:53"))
	}
	h.flush()
	h.expectKind(KindSpoofedFlood, "spoofed_flood/start/9000005 198.51.100.53", "spoofed_flood/end/9000005 198.51.100.53")
	for _, a := range h.out.alerts {
		if a.Kind() == KindSpoofedFlood && a.Phase() == PhaseStart {
			if in := a.Incident; in.LastSeen.After(at(35*time.Second)) || in.Evidence.RandomSource > 5000 {
				t.Errorf("start at %v, evidence %+v", in.LastSeen, in.Evidence)
			}
		}
	}
}

// TestRandomSYNFloodRate: a SYN flood to TCP 25565 from never-repeating
// random sources, 1,600 packets/s for 8 s, on a target never heard from
// before, with every port watched, as in the public StopDDoS capture: a
// spoofed_flood whose peak rate is the flood's, within 5%.
func TestRandomSYNFloodRate(t *testing.T) {
	h := newHarness(t, everyPort())
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 8 * 1600 {
		p := randomSource(rng, at(time.Duration(i)*time.Second/1600), "198.51.100.65:25565")
		syn := tcp(p.Timestamp, p.SrcAddrPort().String(), "198.51.100.65:25565", capture.TCPSyn, nil)
		h.feed(syn)
	}
	h.flush()
	h.expectKind(KindSpoofedFlood, "spoofed_flood/start/9000005 198.51.100.65", "spoofed_flood/end/9000005 198.51.100.65")
	end := h.out.alerts[len(h.out.alerts)-1].Incident
	if math.Abs(end.PeakPPS-1600)/1600 > 0.05 || end.Evidence.RandomSource < 8*1600*9/10 {
		t.Errorf("peak %.1f pps, evidence %+v", end.PeakPPS, end.Evidence)
	}
}
