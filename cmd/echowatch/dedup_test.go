package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// mirroredTwice writes the frames of the capture at path as a span session
// of both directions of a router delivers them: each frame, then delay
// later its copy from the router's other side, with the TTL (or hop limit)
// one lower, the IPv4 checksum to match, other MACs and an 802.1Q tag.
func mirroredTwice(t *testing.T, path string, delay time.Duration) string {
	t.Helper()
	p := readFrames(t, path)
	if p.link != layers.LinkTypeEthernet {
		t.Fatalf("%s: link type %v, want Ethernet", path, p.link)
	}
	type rec struct {
		ci   gopacket.CaptureInfo
		data []byte
	}
	var recs []rec
	dec := capture.NewDecoder()
	var pkt capture.Packet
	for i, data := range p.datas {
		ci := p.cis[i]
		recs = append(recs, rec{ci, data})
		cp := make([]byte, 0, len(data)+4)
		cp = append(cp, 0x02, 0xee, 0, 0, 0, 2, 0x02, 0xee, 0, 0, 0, 1) // the router's other side
		cp = append(cp, 0x81, 0x00, 0x01, 0x2c)                         // 802.1Q, VLAN 300
		cp = append(cp, data[12:]...)
		f := capture.Frame{Data: data, LinkType: layers.LinkTypeEthernet, Timestamp: ci.Timestamp}
		if dec.Decode(&f, &pkt) == capture.DropNone {
			ip := cp[pkt.IPOffset+4:]
			if pkt.Src.Is4() {
				ip[8]--
				binary.BigEndian.PutUint16(ip[10:], 0)
				binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:int(ip[0]&0x0f)*4]))
			} else {
				ip[7]--
			}
		}
		ci.Timestamp = ci.Timestamp.Add(delay)
		ci.CaptureLength, ci.Length = len(cp), ci.Length+4
		recs = append(recs, rec{ci, cp})
	}
	slices.SortStableFunc(recs, func(a, b rec) int { return a.ci.Timestamp.Compare(b.ci.Timestamp) })
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(p.snaplen+4, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WritePacket(r.ci, r.data); err != nil {
			t.Fatal(err)
		}
	}
	return writeTemp(t, "mirrored.pcap", b.Bytes())
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// incidentRates reads a run's alerts: each without its rates, in order,
// and its rates (the incident's, then its directions').
func incidentRates(t *testing.T, out string) (alerts []string, rates [][]float64) {
	t.Helper()
	take := func(m map[string]any, r []float64, keys ...string) []float64 {
		for _, k := range keys {
			v, _ := m[k].(float64)
			r = append(r, v)
			delete(m, k)
		}
		return r
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var a map[string]any
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if a["event_type"] != "alert" {
			continue
		}
		inc := a["incident"].(map[string]any)
		// An incident open at the end of the capture ends at its last
		// frame, which may be a copy a few microseconds after the last
		// packet: its time is a rate's denominator, checked with them.
		ts, _ := time.Parse("2006-01-02T15:04:05.000000-0700", a["timestamp"].(string))
		delete(a, "timestamp")
		r := append(take(inc, nil, "pps", "bps", "peak_pps", "peak_bps"), float64(ts.UnixMicro()))
		if dirs, ok := inc["directions"].([]any); ok {
			for _, d := range dirs {
				r = take(d.(map[string]any), r, "pps", "bps")
			}
		}
		b, _ := json.Marshal(a)
		alerts, rates = append(alerts, string(b)), append(rates, r)
	}
	return alerts, rates
}

// wantedPackets counts the packets of a capture that --dedup looks at:
// those that go on to flows and detection (see internal/sensor, worker.copied).
func wantedPackets(t *testing.T, path string) uint64 {
	t.Helper()
	eng, err := detect.New(detect.DefaultConfig(), discard{})
	if err != nil {
		t.Fatal(err)
	}
	dec := capture.NewDecoder()
	var n uint64
	var pkt capture.Packet
	p := readFrames(t, path)
	for i, data := range p.datas {
		f := capture.Frame{Data: data, LinkType: p.link, Timestamp: p.cis[i].Timestamp}
		if dec.Decode(&f, &pkt) == capture.DropNone && (pkt.Fragment || eng.Wants(&pkt)) {
			n++
		}
	}
	return n
}

// TestDedupMirroredCapture: a capture where every packet of the demo
// appears twice, the copy 20 µs later from the router's other side, gives
// with --dedup 1ms the demo's own incidents (kinds, keys, start, end,
// counts) and rates; without it, the doubled rates that --dedup exists to
// undo.
func TestDedupMirroredCapture(t *testing.T) {
	demo := pcap("demo.pcap")
	twice := mirroredTwice(t, demo, 20*time.Microsecond)
	code, orig, errOut := runMain(t, nil, "-r", demo, "--format", "eve", "--stats")
	if code != 0 {
		t.Fatalf("demo: exit %d: %s", code, errOut)
	}
	want, wantRates := incidentRates(t, orig)
	if len(want) < 5 {
		t.Fatalf("the demo gives %d alerts", len(want))
	}
	wanted := wantedPackets(t, demo)

	for _, args := range [][]string{{"--dedup", "1ms"}, {"--dedup", "1ms", "--workers", "3"}} {
		code, out, errOut := runMain(t, nil, append([]string{"-r", twice, "--format", "eve", "--stats"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		got, gotRates := incidentRates(t, out)
		if len(got) != len(want) {
			t.Errorf("%v: %d alerts, the demo %d:\n%s", args, len(got), len(want), strings.Join(got, "\n"))
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%v: alert %d:\n got %s\nwant %s", args, i, got[i], want[i])
			}
			for j := range min(len(wantRates[i]), len(gotRates[i])) {
				if d := math.Abs(gotRates[i][j] - wantRates[i][j]); d > 0.01*wantRates[i][j] && (j != 4 || d > 20) {
					t.Errorf("%v: alert %d: rate %d is %v, the demo's %v", args, i, j, gotRates[i][j], wantRates[i][j])
				}
			}
		}
		dropped := fmt.Sprintf(`"dedup_dropped":%d,`, wanted)
		if !strings.Contains(out, dropped) {
			t.Errorf("%v: the stats event does not say %s", args, dropped)
		}
	}

	// Without --dedup every packet counts twice: the test can tell.
	_, doubled, _ := runMain(t, nil, "-r", twice, "--format", "eve")
	got, rates := incidentRates(t, doubled)
	reflectionEnd := func(a string) bool {
		return strings.Contains(a, `"kind":"reflection"`) && strings.Contains(a, `"phase":"end"`)
	}
	end, i := slices.IndexFunc(want, reflectionEnd), slices.IndexFunc(got, reflectionEnd)
	if end < 0 || i < 0 || rates[i][0] < 1.9*wantRates[end][0] {
		t.Errorf("without --dedup, the reflection's end does not say twice its rate:\n%s\n%v against %v", strings.Join(got, "\n"), rates, wantRates)
	}
}

// TestDedupSetting: --dedup takes a window (YAML dedup) and its copies
// are counted in the metrics; 0 is off.
func TestDedupSetting(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "echowatch.yaml")
	if err := os.WriteFile(conf, []byte("dedup: 500us\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseArgs([]string{"-r", "x.pcap", "--config", conf}, nil, false)
	if err != nil || cfg.Dedup != 500*time.Microsecond {
		t.Fatalf("dedup: 500us reads as %v, %v", cfg.Dedup, err)
	}
	cfg, _, err = parseArgs([]string{"-r", "x.pcap", "--config", conf, "--dedup", "0"}, nil, false)
	if err != nil || cfg.Dedup != 0 {
		t.Fatalf("--dedup 0 over the file reads as %v, %v", cfg.Dedup, err)
	}

	twice := mirroredTwice(t, pcap("demo.pcap"), 20*time.Microsecond)
	for _, dedup := range []time.Duration{0, time.Millisecond} {
		cfg := defaultConfig()
		cfg.Read, cfg.Dedup = []string{twice}, dedup
		ev := runStats(t, cfg)
		dropped := uint64(0)
		if dedup > 0 {
			dropped = wantedPackets(t, pcap("demo.pcap"))
		}
		if ev.Decoder.DedupDropped != dropped || ev.Decoder.DedupEvicted != 0 {
			t.Errorf("dedup %v: %d dropped, %d evicted; want %d, 0", dedup, ev.Decoder.DedupDropped, ev.Decoder.DedupEvicted, dropped)
		}
		got := gatherMetric(t, ev, "echowatch_dedup_dropped_total")
		if want := fmt.Sprintf("echowatch_dedup_dropped_total %d\n", dropped); !strings.Contains(got, want) {
			t.Errorf("dedup %v: metrics say\n%s\nwant %s", dedup, got, want)
		}
	}
}

// TestDedupAcrossRegions: with several workers a capture file is cut in
// regions that each worker reads with a --dedup table of its own, so a
// packet and its copy on either side of a cut both count. That is rare
// (a cut every 2 MiB), and changes a count by a packet, not an incident.
func TestDedupAcrossRegions(t *testing.T) {
	big := repeatCapture(t, mirroredTwice(t, pcap("demo.pcap"), 20*time.Microsecond), 12)
	info, err := os.Stat(big)
	if err != nil {
		t.Fatal(err)
	}
	cuts := uint64(info.Size()>>21) + 1
	run := func(args ...string) (string, decoderStats) {
		code, out, errOut := runMain(t, nil, append([]string{"-r", big, "--format", "eve", "--stats", "--dedup", "1ms"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out, finalDecoderStats(t, out)
	}
	one, d1 := run()
	three, d3 := run("--workers", "3")
	if d1.DedupDropped != wantedPackets(t, big)/2 || d3.DedupDropped > d1.DedupDropped || d1.DedupDropped-d3.DedupDropped > cuts {
		t.Errorf("dropped %d of %d with one worker, %d with three; want every copy, and at most %d fewer",
			d1.DedupDropped, d1.Decoded, d3.DedupDropped, cuts)
	}
	if a, b := incidentKeys(t, one), incidentKeys(t, three); a != b {
		t.Errorf("one worker's incidents\n%s\nthree workers'\n%s", a, b)
	}
}
