package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// repeatCapture writes copies of a classic pcap one after the other into
// one file, each shifted an hour past the one before, so that the copy
// spans several of the regions that workers read in parallel (2 MiB).
func repeatCapture(t *testing.T, path string, copies int) string {
	t.Helper()
	p := readFrames(t, path)
	span := p.cis[len(p.cis)-1].Timestamp.Sub(p.cis[0].Timestamp) + time.Hour
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(p.snaplen, p.link); err != nil {
		t.Fatal(err)
	}
	for c := range copies {
		for i, ci := range p.cis {
			ci.Timestamp = ci.Timestamp.Add(time.Duration(c) * span)
			if err := w.WritePacket(ci, p.datas[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := filepath.Join(t.TempDir(), filepath.Base(filepath.Dir(path))+"-x"+string(rune('0'+copies))+".pcap")
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWorkersSameAlerts runs every golden capture and the demo with 1, 2
// and 3 workers: the alerts must be the same, byte for byte. Each capture
// also runs repeated eight times in one file, which spans several regions,
// so that region boundaries fall anywhere in the traffic (in the middle of
// fragmented datagrams, of incidents, of flows); and the demo runs as
// inputs that are read by a dealer rather than split: pcapng, gzip,
// standard input.
func TestWorkersSameAlerts(t *testing.T) {
	type input struct {
		name  string
		args  []string
		stdin []byte
	}
	var inputs []input
	goldens, _ := filepath.Glob(pcap("*/capture.pcap"))
	for _, c := range append(goldens, pcap("demo.pcap")) {
		var args []string
		if cfg := filepath.Join(filepath.Dir(c), "config.yaml"); c != pcap("demo.pcap") {
			if _, err := os.Stat(cfg); err == nil {
				args = []string{"--config", cfg}
			}
		}
		name := filepath.Base(filepath.Dir(c))
		if c == pcap("demo.pcap") {
			name = "demo"
		}
		inputs = append(inputs,
			input{name: name, args: append([]string{"-r", c}, args...)},
			input{name: name + " x8", args: append([]string{"-r", repeatCapture(t, c, 8)}, args...)})
	}
	demo, err := os.ReadFile(pcap("demo.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs,
		input{name: "demo on stdin", args: []string{"-r", "-"}, stdin: demo},
		input{name: "pcapng", args: []string{"-r", pcap("formats/two-interfaces.pcapng")}},
		input{name: "gzip", args: []string{"-r", pcap("formats/gzip-compressed.pcap")}},
		input{name: "two files and a filter", args: []string{"-r", pcap("demo.pcap"), "-r", pcap("reflection-in/capture.pcap"), "--bpf", "udp"}})
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			var first string
			for _, workers := range []string{"1", "2", "3"} {
				args := append([]string{"--format", "eve", "--workers", workers}, in.args...)
				code, out, errOut := runMain(t, in.stdin, args...)
				if code != 0 {
					t.Fatalf("%d workers: exit %d: %s", len(workers), code, errOut)
				}
				if workers == "1" {
					first = out
					continue
				}
				if out != first {
					t.Errorf("%s workers differ from one:\n%s", workers, firstDiff(first, out))
				}
			}
		})
	}
}

// firstDiff shows the first line where two outputs differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n  one:  " + x + "\n  more: " + y
		}
	}
	return ""
}

// TestWorkersTruncated cuts a capture that spans several regions in the
// middle of a record: with several workers as with one, the frames before
// the cut are read, the alerts are the same and a warning names the file.
func TestWorkersTruncated(t *testing.T) {
	big := repeatCapture(t, pcap("demo.pcap"), 8)
	data, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	os.WriteFile(cut, data[:len(data)*2/3], 0o644)
	_, one, errOne := runMain(t, nil, "-r", cut, "--format", "eve")
	code, two, errTwo := runMain(t, nil, "-r", cut, "--format", "eve", "--workers", "2")
	if code != 0 || two != one || errTwo != errOne || !strings.Contains(errTwo, "truncated") {
		t.Fatalf("exit %d, stderr %q (one worker: %q), same alerts: %v", code, errTwo, errOne, two == one)
	}
}

// TestWorkerKeepsAllocateNothing checks what a worker does per frame when
// it is one of several (decode, keep what the engine wants in its chunk),
// and what the engine's goroutine then does per packet kept (flows,
// detection): once the chunk has grown and the keys exist, nothing
// allocates, --dedup included. The traffic is an echo reflection too slow
// to raise an alert (alerts allocate their incident's id), with DNS
// around it.
func TestWorkerKeepsAllocateNothing(t *testing.T) {
	src, err := capture.OpenFiles([]string{pcap("benign-slow-reflection/capture.pcap")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var frames []capture.Frame
	var f capture.Frame
	for src.ReadFrame(&f) == nil {
		g := f
		g.Data = bytes.Clone(f.Data)
		frames = append(frames, g)
	}
	cfg := defaultConfig()
	cfg.Workers = 2 // so the engine's goroutine has the flow and fragment tables
	alerts := &countAlerts{}
	eng, err := detect.New(cfg.Config, alerts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(cfg, []capture.Source{src}, eng)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{dec: capture.NewDecoder(), wants: eng.Wants}
	w.dec.SkipFragments()
	// With --dedup: each lap comes an hour later, so nothing is a copy,
	// and every packet kept is looked up and recorded.
	if w.dedup, err = capture.NewDedup(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	st := &stage{p: p, now: -1 << 63}
	c := <-newChunks(1)
	lap := time.Duration(0)
	keep := func() {
		c.reset()
		for i := range frames {
			w.frame = frames[i]
			w.frame.Timestamp = w.frame.Timestamp.Add(lap)
			w.keep(c)
		}
		lap += time.Hour
	}
	keep() // grow the chunk
	if allocs := testing.AllocsPerRun(5, keep); allocs != 0 {
		t.Errorf("a worker allocates %v times per lap of %d frames", allocs, len(frames))
	}
	take := func() { keep(); st.take(c) }
	take() // make the keys
	if allocs := testing.AllocsPerRun(5, take); allocs != 0 || alerts.n != 0 {
		t.Errorf("the engine's goroutine allocates %v times per lap of %d frames (%d kept, %d alerts)", allocs, len(frames), len(c.recs), alerts.n)
	}
	if len(c.recs) < 100 {
		t.Errorf("only %d packets kept: the test does not test the engine's side", len(c.recs))
	}
}

// countAlerts counts alerts.
type countAlerts struct{ n int }

func (c *countAlerts) WriteAlert(*detect.Alert) { c.n++ }

// discard drops alerts.
type discard struct{}

func (discard) WriteAlert(*detect.Alert) {}

func TestQuietClock(t *testing.T) {
	var q quietClock
	wall := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok := q.at(time.Time{}, wall); ok {
		t.Fatal("a clock before the first packet")
	}
	pkt := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	// The capture goes quiet at wall; 3 s later the clock is 3 s on.
	if at, ok := q.at(pkt, wall); !ok || !at.Equal(pkt) {
		t.Fatalf("at the quiet's start: %v %v", at, ok)
	}
	if at, _ := q.at(pkt, wall.Add(3*time.Second)); !at.Equal(pkt.Add(3 * time.Second)) {
		t.Fatalf("3 s into the quiet: %v", at)
	}
	// A new packet restarts the quiet from its own time.
	if at, _ := q.at(pkt.Add(time.Second), wall.Add(5*time.Second)); !at.Equal(pkt.Add(time.Second)) {
		t.Fatalf("after a new packet: %v", at)
	}
}

// TestWorkersDecodeAsConfigured: every decoder the pipeline makes (each
// worker's, and the one that reads a region again) follows --vxlan-port
// and --tenant; --dedup's table is the lone worker's, or, with several,
// the stage's, which the workers' sums feed.
func TestWorkersDecodeAsConfigured(t *testing.T) {
	data := carrierVXLAN(8472, 42, readFrames(t, pcap("demo.pcap")).datas[0])
	eng, err := detect.New(detect.DefaultConfig(), discard{})
	if err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 3} {
		cfg := defaultConfig()
		cfg.Workers, cfg.VXLANPorts, cfg.Tenant, cfg.Dedup = workers, []int{8472}, "vni", time.Millisecond
		pl, err := newPipeline(cfg, []capture.Source{silentSource{}}, eng)
		if err != nil {
			t.Fatal(err)
		}
		ws := pl.workers
		if pl.redo != nil {
			ws = append(ws, pl.redo)
		}
		if want := map[int]int{1: 1, 3: 4}[workers]; len(ws) != want {
			t.Fatalf("%d workers: %d decoders, want %d", workers, len(ws), want)
		}
		for _, w := range ws {
			f := capture.Frame{Data: data, LinkType: layers.LinkTypeEthernet, Timestamp: time.Unix(1e9, 0)}
			var p capture.Packet
			if r := w.dec.Decode(&f, &p); r != capture.DropNone || p.Tunnel.Kind != capture.TunnelVXLAN || p.Tenant != 42 {
				t.Errorf("%d workers, worker %d: %v, tunnel %v, tenant %d; want VXLAN on 8472, tenant 42", workers, w.id, r, p.Tunnel.Kind, p.Tenant)
			}
			switch {
			case workers == 1 && (w.dedup == nil || w.dedup.Seen(&p) || !w.dedup.Seen(&p)):
				t.Errorf("a lone worker has no --dedup table of its own")
			case workers > 1 && (w.dedup != nil || !w.sums):
				t.Errorf("%d workers, worker %d: a --dedup table of its own, or no sums for the stage's", workers, w.id)
			}
		}
		if workers > 1 && pl.dedup == nil {
			t.Errorf("%d workers: the stage has no --dedup table", workers)
		}
	}
}
