//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/internal/pcaptest"
)

// exported runs a real exporter (its command line, with ADDR in place of
// the collector's address) and returns a capture of the datagrams it sent,
// written as a collector's tcpdump would: a raw IPv4/UDP frame per datagram,
// from 127.0.0.1 to port 2055, at the time it arrived (see exportTime).
func exported(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (scripts/test.sh installs softflowd and pmacct)", name)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "ADDR", conn.LocalAddr().String())
	}
	if err := conn.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	// The reader stamps each datagram as it arrives; it stops when the
	// socket closes.
	var (
		mu   sync.Mutex
		recs []pcaptest.Record
		last = time.Now()
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			recs = append(recs, pcaptest.Record{TS: exportTime(buf[:n], now), Data: exportFrame(buf[:n]), Wire: 28 + n})
			last = now
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", name, err, b)
	}
	// The exporter has gone; its last datagrams may still be in the
	// socket. Wait until none came for a quarter second.
	for {
		mu.Lock()
		quiet := time.Since(last)
		mu.Unlock()
		if quiet > 250*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn.Close()
	<-done
	// Export times come in order from one exporter, yet stamps of equal
	// seconds keep the order they arrived in.
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].TS.Before(recs[j].TS) })
	if len(recs) == 0 {
		t.Fatalf("%s exported nothing", name)
	}
	return pcaptest.WriteFile(t, t.TempDir(), "export.pcap", pcaptest.Pcap(t, true, layers.LinkTypeRaw, recs))
}

// exportTime is when a collector would have received a NetFlow or IPFIX
// datagram had its exporter run in real time: the export time its header
// states. softflowd -r reads a capture at full speed while its clock (-a)
// follows the capture's, so the wall clock of arrival says nothing of the
// capture's time. sFlow headers state no time: the wall clock of arrival,
// which is right for an exporter run in real time.
func exportTime(d []byte, arrival time.Time) time.Time {
	if len(d) < 16 {
		return arrival
	}
	switch binary.BigEndian.Uint16(d) {
	case 5: // sysUptime, unix_secs, unix_nsecs
		return time.Unix(int64(binary.BigEndian.Uint32(d[8:])), int64(binary.BigEndian.Uint32(d[12:])))
	case 9: // sysUptime, unix_secs
		return time.Unix(int64(binary.BigEndian.Uint32(d[8:])), 0)
	case 10: // length, export time
		return time.Unix(int64(binary.BigEndian.Uint32(d[4:])), 0)
	}
	return arrival
}

// exportFrame wraps a datagram in IPv4 and UDP headers, 127.0.0.1 to itself,
// port 40000 to 2055.
func exportFrame(payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:], []byte{127, 0, 0, 1, 127, 0, 0, 1})
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], 2055)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// incidentSummary is what the telemetry tests compare of an incident: its
// kind, its key (victim, target, or the two endpoints), and its peak rate.
type incidentSummary struct {
	kind, key string
	peak      float64
	seen      telemetrySeen // its sampling and exporters; zero for a capture's
}

// endsOf reads the end alerts of the detected kinds that telemetry must
// report (reflection, loop, spoofed flood) from EVE lines.
func endsOf(t *testing.T, eve string) map[string]incidentSummary {
	t.Helper()
	out := map[string]incidentSummary{}
	sc := bufio.NewScanner(strings.NewReader(eve))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a struct {
			EventType string `json:"event_type"`
			Incident  struct {
				Kind      string         `json:"kind"`
				Phase     string         `json:"phase"`
				Victim    string         `json:"victim"`
				Target    string         `json:"target"`
				Endpoints []string       `json:"endpoints"`
				PeakPPS   float64        `json:"peak_pps"`
				Sampling  telemetrySeen  `json:"sampling"`
				Exporters []exporterSeen `json:"exporters"`
			} `json:"incident"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		in := a.Incident
		if a.EventType != "alert" || in.Phase != "end" {
			continue
		}
		var key string
		switch in.Kind {
		case "reflection":
			key = in.Victim
		case "spoofed_flood":
			key = in.Target
		case "loop":
			key = strings.Join(in.Endpoints, " ")
		default:
			continue
		}
		seen := in.Sampling
		seen.Exporters = in.Exporters
		out[in.Kind+" "+key] = incidentSummary{kind: in.Kind, key: key, peak: in.PeakPPS, seen: seen}
	}
	return out
}

// TestTelemetryFromSoftflowd has softflowd, a real exporter, read the
// bundled attack captures and export their flows as NetFlow v5, NetFlow v9
// and IPFIX; echowatch replays the exports (-r --telemetry) and must report
// the incidents that the captures themselves give, with the same victim,
// target or endpoints, at a peak rate within 10% of the capture's. At 1 in
// 10 sampling, the estimate must stay within 30%. The benign captures must
// stay silent.
func TestTelemetryFromSoftflowd(t *testing.T) {
	cases := []struct {
		name   string
		config string // the case's settings, if any
	}{
		{"reflection-in", "config.yaml"},
		{"chargen-reflection", ""},
		{"loop-echo-chargen-vlan", ""},
		{"random-source-flood", ""},
		{"bogon-flood", ""},
		{"benign-dns", ""},
		{"benign-ntp-peers", ""},
		{"busy-ntp-server", "config.yaml"},
	}
	for _, c := range cases {
		for _, v := range []string{"5", "9", "10"} {
			for _, sampling := range []int{1, 10} {
				if sampling > 1 && !strings.Contains(c.name, "reflection") {
					continue // a sustained attack: the reflections
				}
				t.Run(fmt.Sprintf("%s/v%s/1in%d", c.name, v, sampling), func(t *testing.T) {
					t.Parallel()
					in := filepath.Join(pcap(c.name), "capture.pcap")
					var extra []string
					if c.config != "" {
						extra = []string{"--config", filepath.Join(pcap(c.name), c.config)}
					}
					// The truth: what the capture itself gives.
					code, want, stderr := runMain(t, nil, append([]string{"-r", in, "--format", "eve"}, extra...)...)
					if code != 0 {
						t.Fatalf("capture: exit %d: %s", code, stderr)
					}
					// -a: flow times from the capture, not the wall clock;
					// -A milli: v9 and IPFIX with absolute times.
					args := []string{"-c", filepath.Join(t.TempDir(), "ctl"), "-p", filepath.Join(t.TempDir(), "pid"),
						"-a", "-d", "-r", in, "-n", "ADDR", "-v", v, "-s", fmt.Sprint(sampling)}
					if v != "5" && sampling == 1 {
						args = append(args, "-A", "milli")
					}
					export := exported(t, "softflowd", args...)
					code, got, stderr := runMain(t, nil, append([]string{"-r", export, "--telemetry", "--exporter", "127.0.0.1",
						"--format", "eve"}, extra...)...)
					if code != 0 {
						t.Fatalf("telemetry: exit %d: %s", code, stderr)
					}
					wantEnds, gotEnds := endsOf(t, want), endsOf(t, got)
					tolerance := 0.10
					if sampling > 1 {
						tolerance = 0.30
					}
					for k, w := range wantEnds {
						if v == "5" && strings.Contains(k, ":") && !strings.Contains(k, ".") {
							continue // NetFlow v5 carries IPv4 flows only
						}
						g, ok := gotEnds[k]
						if !ok {
							t.Errorf("%s: not reported from telemetry; got %v", k, gotEnds)
							continue
						}
						if math.Abs(g.peak-w.peak) > tolerance*w.peak {
							t.Errorf("%s: peak %.1f pps from telemetry, %.1f in the capture: off by more than %.0f%%", k, g.peak, w.peak, tolerance*100)
						}
						if g.seen.Rate != sampling {
							t.Errorf("%s: sampling %+v, want rate %d", k, g.seen, sampling)
						}
					}
					for k := range gotEnds {
						if _, ok := wantEnds[k]; !ok {
							t.Errorf("%s: reported from telemetry, not in the capture", k)
						}
					}
					if len(wantEnds) == 0 && strings.Contains(got, `"event_type":"alert"`) {
						t.Errorf("benign capture: telemetry gave alerts:\n%s", got)
					}
				})
			}
		}
	}
}

// TestTelemetryStats checks the telemetry counters of the stats event and
// the metrics on softflowd's IPFIX export of a capture, whole and with one
// datagram lost on the way: datagrams and records counted per exporter,
// the sampling rate seen, the sequence gap and what it lost; a listed
// exporter labelled by its address, others summed as "unlisted".
func TestTelemetryStats(t *testing.T) {
	in := filepath.Join(pcap("reflection-in"), "capture.pcap")
	export := exported(t, "softflowd", "-c", filepath.Join(t.TempDir(), "ctl"), "-p", filepath.Join(t.TempDir(), "pid"),
		"-a", "-d", "-r", in, "-n", "ADDR", "-v", "10", "-A", "milli")
	frames := readFrames(t, export)
	recs := make([]pcaptest.Record, len(frames.datas))
	for i, d := range frames.datas {
		recs[i] = pcaptest.Record{TS: frames.cis[i].Timestamp, Data: d, Wire: frames.cis[i].Length}
	}
	// Drop the second datagram that holds data records.
	var lossy []pcaptest.Record
	data := 0
	for _, r := range recs {
		if ipfixHasData(r.Data[28:]) {
			if data++; data == 2 {
				continue
			}
		}
		lossy = append(lossy, r)
	}
	if data < 3 {
		t.Fatalf("softflowd's export has fewer than three datagrams of data: %d datagrams", len(recs))
	}
	lossyFile := pcaptest.WriteFile(t, t.TempDir(), "lossy.pcap", pcaptest.Pcap(t, true, layers.LinkTypeRaw, lossy))

	// The stats event's own type, read back from its JSON.
	type exporter = exporterStats
	type telemetry struct {
		Datagrams uint64            `json:"datagrams"`
		Records   uint64            `json:"records"`
		Dropped   map[string]uint64 `json:"dropped"`
		Exporters []exporter        `json:"exporters"`
	}
	final := func(file, exp string) telemetry {
		t.Helper()
		code, out, stderr := runMain(t, nil, "-r", file, "--telemetry", "--exporter", exp, "--format", "eve", "--stats")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var ev struct {
			EventType string `json:"event_type"`
			Stats     struct {
				Echowatch struct {
					Telemetry *telemetry `json:"telemetry"`
				} `json:"echowatch"`
			} `json:"stats"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil || ev.EventType != "stats" || ev.Stats.Echowatch.Telemetry == nil {
			t.Fatalf("the last line is no stats event with telemetry (%v): %s", err, lines[len(lines)-1])
		}
		return *ev.Stats.Echowatch.Telemetry
	}

	whole := final(export, "127.0.0.1")
	if len(whole.Exporters) != 1 {
		t.Fatalf("exporters %+v", whole.Exporters)
	}
	e := whole.Exporters[0]
	want := exporter{Address: "127.0.0.1", Listed: true, Datagrams: uint64(len(recs)), Records: e.Records, SamplingRate: 1}
	if e != want || e.Records == 0 || whole.Datagrams != e.Datagrams || whole.Records != e.Records {
		t.Errorf("whole export: %+v (totals %d datagrams, %d records), want %+v", e, whole.Datagrams, whole.Records, want)
	}
	for reason, n := range whole.Dropped {
		if n != 0 {
			t.Errorf("whole export: dropped %s %d", reason, n)
		}
	}

	lost := final(lossyFile, "any")
	e = lost.Exporters[0]
	dropped := whole.Records - lost.Records
	want = exporter{Address: "127.0.0.1", Datagrams: uint64(len(recs) - 1), Records: e.Records, SamplingRate: 1,
		SequenceGaps: 1, Lost: dropped}
	if e != want || dropped == 0 || dropped > whole.Records {
		t.Errorf("one datagram lost: %+v, want %+v", e, want)
	}

	// The metrics: the listed exporter by address.
	for _, c := range []struct {
		file, exporter, label string
		datagrams             uint64
	}{
		{export, "127.0.0.1", "127.0.0.1", uint64(len(recs))},
		{lossyFile, "any", "unlisted", uint64(len(recs) - 1)},
	} {
		cfg, _, err := parseArgs([]string{"-r", c.file, "--telemetry", "--exporter", c.exporter, "--metrics-listen", "127.0.0.1:0"}, io.Discard, false)
		if err != nil {
			t.Fatal(err)
		}
		var page string
		cfg.metricsRan = func(a string) { page = get(t, "http://"+a+"/metrics") }
		if err := sense(context.Background(), cfg, nil, io.Discard, io.Discard, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("echowatch_telemetry_datagrams_total{exporter=%q} %d\n", c.label, c.datagrams)
		if !strings.Contains(page, line) || !strings.Contains(page, `echowatch_telemetry_dropped_total{reason="unknown_exporter"} 0`) {
			t.Errorf("--exporter %s: no %q in the metrics:\n%s", c.exporter, line, page)
		}
	}
}

// ipfixHasData reports whether an IPFIX message holds a data set (set id
// 256 and up).
func ipfixHasData(msg []byte) bool {
	if len(msg) < 16 || binary.BigEndian.Uint16(msg) != 10 {
		return false
	}
	for b := msg[16:]; len(b) >= 4; {
		id, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if id >= 256 {
			return true
		}
		if n < 4 || n > len(b) {
			break
		}
		b = b[n:]
	}
	return false
}

// TestTelemetryBesideInterface runs echowatch on a veth interface and as a
// NetFlow collector at once: a reflection that the interface sees and one
// that softflowd exports (IPFIX, from the bundled chargen capture) must
// both be reported, the second with its sampling and exporter, and the
// final stats must count the collector's records.
func TestTelemetryBesideInterface(t *testing.T) {
	if _, err := exec.LookPath("softflowd"); err != nil {
		t.Skip("softflowd is not installed (scripts/test.sh installs it)")
	}
	for _, mode := range captureModes[:2] {
		t.Run(mode.name, func(t *testing.T) {
			sender, sensor := netnsPair(t, "tm"+mode.name[:2])
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"-i", "ew1", "--netflow", "127.0.0.1:2055", "--exporter", "127.0.0.1",
				"--format", "eve", "--stats", "--stats-interval", "300ms", "--home-net", "198.18.0.0/30"}, mode.args...)
			proc := startSensor(ctx, t, sensor, args...)
			sendReplies(ctx, t, sender)
			in := filepath.Join(pcap("chargen-reflection"), "capture.pcap")
			dir := t.TempDir()
			if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", sensor, "softflowd", "-c", filepath.Join(dir, "ctl"),
				"-p", filepath.Join(dir, "pid"), "-a", "-d", "-r", in, "-n", "127.0.0.1:2055", "-v", "10", "-A", "milli").CombinedOutput(); err != nil {
				t.Fatalf("softflowd: %v: %s", err, out)
			}
			proc.settle(t, 400)
			if err := proc.stop(); err != nil {
				t.Fatalf("echowatch: %v\nstderr:\n%s", err, proc.errors())
			}
			out := proc.stdout.String()
			ends := endsOf(t, out)
			if _, ok := ends["reflection 198.18.0.2"]; !ok {
				t.Errorf("the interface's reflection was not reported: %v", ends)
			}
			_, wantEnds, _ := runMain(t, nil, "-r", in, "--format", "eve")
			for k := range endsOf(t, wantEnds) {
				e, ok := ends[k]
				if !ok {
					t.Errorf("%s, exported by softflowd, was not reported: %v", k, ends)
					continue
				}
				if e.seen.Format != "ipfix" {
					t.Errorf("%s: sampling %+v, want the IPFIX export's", k, e.seen)
				}
			}
			if regexpInt(t, out, `"telemetry":\{"datagrams":\d+,"samples":\d+,"records":(\d+)`) == 0 {
				t.Errorf("the final stats count no record:\n%s", out)
			}
			if strings.Contains(proc.errors(), "behind detection's clock") {
				t.Errorf("the collector's records moved detection's clock back:\n%s", proc.errors())
			}
		})
	}
}
