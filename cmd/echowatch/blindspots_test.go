package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/sensor"
	"github.com/echowatch/echowatch/sinks"
)

// runStats runs the sensor as cfg says, alerts discarded, and returns
// its counters.
func runStats(t *testing.T, cfg config) *statsEvent {
	t.Helper()
	eng, err := detect.New(cfg.Config, discardAlerts{})
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := openSources(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(srcs)
	sc, err := cfg.sensorConfig()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sensor.New(sc, srcs, eng)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return newStatsEvent(cfg.SensorName, s.Stats(), cfg.Telemetry.listed)
}

// gatherMetric returns the metric family name as /metrics shows ev.
func gatherMetric(t *testing.T, ev *statsEvent, name string) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(func() *statsEvent { return ev }, func() []sinks.OutputStats { return nil }))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range fams {
		if f.GetName() == name {
			expfmt.MetricFamilyToText(&b, f)
		}
	}
	return b.String()
}

// finalDecoderStats reads the decoder's counters from the stats event
// that ends a run's output.
func finalDecoderStats(t *testing.T, out string) decoderStats {
	t.Helper()
	var ev struct {
		EventType string `json:"event_type"`
		Stats     struct {
			Echowatch struct {
				Decoder decoderStats `json:"decoder"`
			} `json:"echowatch"`
		} `json:"stats"`
	}
	out = strings.TrimSpace(out)
	if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "\n")+1:]), &ev); err != nil || ev.EventType != "stats" {
		t.Fatalf("the output does not end with a stats event (%v): ...%s", err, out[max(0, len(out)-300):])
	}
	return ev.Stats.Echowatch.Decoder
}

// carrierIPv4 returns an Ethernet frame with an IPv4 packet of protocol
// proto from 10.0.0.1 to 10.0.0.2: a mirror's transport to the sensor.
// fragOff, in 8-byte units, makes it a later fragment.
func carrierIPv4(proto byte, fragOff uint16, payload []byte) []byte {
	b := []byte{
		0x02, 0, 0, 0, 0, 0xa2, 0x02, 0, 0, 0, 0, 0xa1, 0x08, 0x00, // Ethernet, IPv4
		0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
	}
	binary.BigEndian.PutUint16(b[16:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[20:], fragOff)
	return append(b, payload...)
}

// carrierVXLAN wraps an Ethernet frame in VXLAN (VNI vni) to UDP port.
func carrierVXLAN(port uint16, vni uint32, inner []byte) []byte {
	u := make([]byte, 16, 16+len(inner))
	binary.BigEndian.PutUint16(u[0:], 50000)
	binary.BigEndian.PutUint16(u[2:], port)
	binary.BigEndian.PutUint16(u[4:], uint16(16+len(inner)))
	u[8] = 0x08 // VXLAN's I flag
	binary.BigEndian.PutUint32(u[12:], vni<<8)
	return carrierIPv4(capture.ProtoUDP, 0, append(u, inner...))
}

// carrierGRE wraps payload in a GRE header of flags and protocol.
func carrierGRE(flags, proto uint16, payload []byte) []byte {
	g := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, flags), proto)
	return carrierIPv4(47, 0, append(g, payload...))
}

// blindCapture writes the demo's frames wrapped in VXLAN to UDP 8472, and
// after them one frame of each other kind that echowatch cannot look
// into: GRE carrying PPP, a GRE header of an unknown version, VXLAN nested
// nine deep, and a later fragment of a GRE packet.
func blindCapture(t *testing.T) string {
	t.Helper()
	p := readFrames(t, pcap("demo.pcap"))
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	write := func(ci gopacket.CaptureInfo, data []byte) {
		ci.CaptureLength, ci.Length = len(data), len(data)
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	for i, data := range p.datas {
		write(p.cis[i], carrierVXLAN(8472, 42, data))
	}
	inner := p.datas[0]
	deep := inner
	for range 9 {
		deep = carrierVXLAN(4789, 7, deep)
	}
	end := p.cis[len(p.cis)-1]
	for _, f := range [][]byte{
		carrierGRE(0, 0x880b, []byte{0xff, 0x03, 0xc0, 0x21}), // PPP (LCP)
		carrierGRE(0x0002, 0x0800, inner[14:]),                // version 2
		deep,
		carrierIPv4(47, 185, make([]byte, 64)),
	} {
		write(end, f)
	}
	return writeTemp(t, "blind.pcap", b.Bytes())
}

// The warnings for blindCapture, in the order they are given.
const blindWarnings = `echowatch: warning: 2,959 frames to UDP port 8472 look like VXLAN and were not decoded: add --vxlan-port 8472 (stats: echowatch.decoder.tunnels.vxlan.other_port)
echowatch: warning: 1 frame has a gre header that does not parse, and was not looked into (stats: echowatch.decoder.tunnels.gre.malformed)
echowatch: warning: 1 gre frame carries a protocol echowatch does not decode, and was not looked into (stats: echowatch.decoder.tunnels.gre.unknown_payload)
echowatch: warning: 1 frame nests more encapsulations than echowatch follows, and was not looked into (stats: echowatch.decoder.dropped.tunnel_too_deep)
echowatch: warning: 1 later fragment of a tunnel packet was not looked into, and the packet it carried was seen cut short: raise the MTU between the mirror and the sensor (stats: echowatch.decoder.dropped.tunnel_fragment)
`

// TestBlindSpotsWarned: frames echowatch saw and could not look into are
// warned of on standard error, once per kind, with the setting that
// would help where one would; the stats event and the metrics count them.
func TestBlindSpotsWarned(t *testing.T) {
	blind := blindCapture(t)
	for _, workers := range []string{"1", "3"} {
		code, out, errOut := runMain(t, nil, "-r", blind, "--format", "eve", "--stats", "--workers", workers)
		if code != 0 || errOut != blindWarnings {
			t.Errorf("%s workers: exit %d, stderr\n%s\nwant\n%s", workers, code, errOut, blindWarnings)
		}
		d := finalDecoderStats(t, out)
		for _, c := range []struct {
			what      string
			got, want uint64
		}{
			{"tunnels.vxlan.other_port", d.Tunnels["vxlan"]["other_port"], 2959},
			{"tunnels.vxlan.decoded", d.Tunnels["vxlan"]["decoded"], 0},
			{"tunnels.gre.malformed", d.Tunnels["gre"]["malformed"], 1},
			{"tunnels.gre.unknown_payload", d.Tunnels["gre"]["unknown_payload"], 1},
			{"dropped.malformed_tunnel", d.Dropped["malformed_tunnel"], 1},
			{"dropped.unknown_tunnel_payload", d.Dropped["unknown_tunnel_payload"], 1},
			{"dropped.tunnel_too_deep", d.Dropped["tunnel_too_deep"], 1},
			{"dropped.tunnel_fragment", d.Dropped["tunnel_fragment"], 1},
		} {
			if c.got != c.want {
				t.Errorf("%s workers: stats decoder.%s = %d, want %d", workers, c.what, c.got, c.want)
			}
		}
	}

	cfg := defaultConfig()
	cfg.Read = []string{blind}
	got := gatherMetric(t, runStats(t, cfg), "echowatch_tunnel_frames_total")
	for _, want := range []string{
		`echowatch_tunnel_frames_total{kind="vxlan",result="other_port"} 2959`,
		`echowatch_tunnel_frames_total{kind="vxlan",result="decoded"} 0`,
		`echowatch_tunnel_frames_total{kind="gre",result="malformed"} 1`,
		`echowatch_tunnel_frames_total{kind="gre",result="unknown_payload"} 1`,
		`echowatch_tunnel_frames_total{kind="geneve",result="not_tunnel"} 0`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("the metrics lack %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, `kind="gre",result="not_tunnel"`) || strings.Contains(got, `kind="none"`) {
		t.Errorf("the metrics have counters no such frame has:\n%s", got)
	}
}

// TestVXLANPortSetting: with --vxlan-port 8472 the same capture is looked
// into: the demo's incidents, VXLAN counted as decoded, no warning.
func TestVXLANPortSetting(t *testing.T) {
	blind := blindCapture(t)
	_, demo, _ := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve")
	for _, args := range [][]string{{"--vxlan-port", "8472"}, {"--vxlan-port", "9999,8472", "--workers", "2"}} {
		code, out, errOut := runMain(t, nil, append([]string{"-r", blind, "--format", "eve", "--stats"}, args...)...)
		if code != 0 || strings.Contains(errOut, "8472") {
			t.Errorf("%v: exit %d, stderr:\n%s", args, code, errOut)
		}
		if got, want := incidentKeys(t, out), incidentKeys(t, demo); got != want {
			t.Errorf("%v: incidents\n%s\nwant the demo's\n%s", args, got, want)
		}
		if !strings.Contains(out, `"vxlan":{"decoded":2959,`) {
			t.Errorf("%v: stats do not count the VXLAN decoded:\n%s", args, out[strings.LastIndex(out, `"tunnels"`):])
		}
	}
}

// incidentKeys lists what identifies each alert of a run: its kind,
// phase, addresses, victim, start and end.
func incidentKeys(t *testing.T, out string) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var a struct {
			EventType string `json:"event_type"`
			Src       string `json:"src_ip"`
			Dst       string `json:"dest_ip"`
			Incident  struct {
				Kind      string `json:"kind"`
				Phase     string `json:"phase"`
				FirstSeen string `json:"first_seen"`
				LastSeen  string `json:"last_seen"`
				Victim    string `json:"victim"`
			} `json:"incident"`
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if a.EventType == "alert" {
			i := a.Incident
			b.WriteString(strings.Join([]string{i.Kind, i.Phase, a.Src, a.Dst, i.Victim, i.FirstSeen, i.LastSeen}, " "))
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestBlindSpotsOncePerKind: the checks run at every stats period of a
// live run; each kind is warned of the first time its counter is not 0,
// never again however it grows.
func TestBlindSpotsOncePerKind(t *testing.T) {
	var out bytes.Buffer
	b := newBlindSpots(&out)
	d := decoderStats{Dropped: map[string]uint64{}, Tunnels: map[string]map[string]uint64{"vxlan": {}, "geneve": {}}}
	b.check(d)
	if out.Len() != 0 {
		t.Fatalf("warned of nothing: %s", out.String())
	}
	d.Tunnels["vxlan"]["other_port"] = 1234
	b.check(d)
	d.Tunnels["vxlan"]["other_port"] = 99999
	d.Tunnels["geneve"]["unknown_payload"] = 3
	b.check(d)
	b.check(d)
	want := "echowatch: warning: 1,234 frames to UDP port 8472 look like VXLAN and were not decoded: add --vxlan-port 8472 (stats: echowatch.decoder.tunnels.vxlan.other_port)\n" +
		"echowatch: warning: 3 geneve frames carry a protocol echowatch does not decode, and were not looked into (stats: echowatch.decoder.tunnels.geneve.unknown_payload)\n"
	if out.String() != want {
		t.Errorf("warnings:\n%s\nwant\n%s", out.String(), want)
	}
}

// TestLiveLooksEverySecond: live, the counters are looked at every
// second even without --stats or --metrics-listen, so that a blind spot
// is warned of as it appears; offline only with --metrics-listen.
func TestLiveLooksEverySecond(t *testing.T) {
	for _, c := range []struct {
		live, stats bool
		interval    string
		metrics     string
		want        string
	}{
		{true, false, "60s", "", "1s"},
		{true, true, "60s", "", "1s"},
		{true, true, "200ms", "", "200ms"},
		{false, false, "60s", "", "0s"},
		{false, true, "60s", "", "0s"},
		{false, false, "60s", "127.0.0.1:0", "1s"},
	} {
		cfg := defaultConfig()
		cfg.Stats, cfg.MetricsListen = c.stats, c.metrics
		cfg.StatsInterval, _ = time.ParseDuration(c.interval)
		if c.live {
			cfg.Interface = "ew-test0"
		}
		if every := statsEvery(cfg); every.String() != c.want {
			t.Errorf("live %v stats %v every %s metrics %q: looks every %v, want %s", c.live, c.stats, c.interval, c.metrics, every, c.want)
		}
	}
}

// TestClockTroubleWarned: a capture whose clock steps back, or whose
// records carry impossible times, is warned of once each, naming the
// frame's time and detection's clock; the stats event and the metrics
// count them.
func TestClockTroubleWarned(t *testing.T) {
	for _, c := range []struct {
		name, warning, metric string
		stepsBack, invalid    uint64
	}{
		{"clock-step-back", "echowatch: warning: a frame stamped 2024-03-19T11:00:22.003120+0000 came 59m59.993s behind detection's clock (2024-03-19T12:00:21.996290+0000)",
			"echowatch_time_steps_back_total 1", 1, 0},
		{"clock-zero-timestamps", "echowatch: warning: 7 packets have impossible times (before 1995, or more than a day past detection's clock): the first, stamped 1970-01-01T00:00:00.000000+0000, came before any valid time",
			"echowatch_time_invalid_total 7", 0, 7},
	} {
		code, out, errOut := runMain(t, nil, "-r", pcap(c.name+"/capture.pcap"), "--format", "eve", "--stats")
		if code != 0 || strings.Count(errOut, "echowatch: warning:") != 1 || !strings.HasPrefix(errOut, c.warning) {
			t.Errorf("%s: exit %d, stderr\n%s\nwant one warning, beginning\n%s", c.name, code, errOut, c.warning)
		}
		var ev struct {
			Stats struct {
				Echowatch struct {
					Detect struct {
						StepsBack uint64 `json:"time_steps_back"`
						Invalid   uint64 `json:"time_invalid"`
					} `json:"detect"`
				} `json:"echowatch"`
			} `json:"stats"`
		}
		out = strings.TrimSpace(out)
		if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "\n")+1:]), &ev); err != nil {
			t.Fatal(err)
		}
		if d := ev.Stats.Echowatch.Detect; d.StepsBack != c.stepsBack || d.Invalid != c.invalid {
			t.Errorf("%s: stats detect.time_steps_back %d, time_invalid %d; want %d and %d", c.name, d.StepsBack, d.Invalid, c.stepsBack, c.invalid)
		}
		cfg := defaultConfig()
		cfg.Read = []string{pcap(c.name + "/capture.pcap")}
		ev2 := runStats(t, cfg)
		name := strings.Fields(c.metric)[0]
		if got := gatherMetric(t, ev2, name); !strings.Contains(got, c.metric+"\n") {
			t.Errorf("%s: the metrics lack %s:\n%s", c.name, c.metric, got)
		}
	}
}
