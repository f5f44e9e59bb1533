package sensor

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// TestWorkerKeepsAllocateNothing checks what a worker does per frame when
// it is one of several (decode, keep what the engine wants in its chunk),
// and what the engine's goroutine then does per packet kept (flows,
// detection): once the chunk has grown and the keys exist, nothing
// allocates, dedup included. The traffic is an echo reflection too slow
// to raise an alert (alerts allocate their incident's id), with DNS
// around it.
func TestWorkerKeepsAllocateNothing(t *testing.T) {
	frames := readFrames(t, "benign-slow-reflection")
	alerts := &countAlerts{}
	eng, err := detect.New(detect.DefaultConfig(), alerts)
	if err != nil {
		t.Fatal(err)
	}
	// Two workers, so that the engine's goroutine has the flow and
	// fragment tables.
	s, err := New(Config{Workers: 2}, []capture.Source{silentSource{}}, eng)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{dec: capture.NewDecoder(), wants: eng.Wants}
	w.dec.SkipFragments()
	// With dedup: each lap comes an hour later, so nothing is a copy,
	// and every packet kept is looked up and recorded.
	if w.dedup, err = capture.NewDedup(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	st := &stage{s: s}
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

// readFrames returns the frames of a case's capture, their bytes copied.
func readFrames(t *testing.T, name string) []capture.Frame {
	t.Helper()
	src, err := capture.OpenFiles([]string{"../../pcaps/" + name + "/capture.pcap"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var frames []capture.Frame
	var f capture.Frame
	for src.ReadFrame(&f) == nil {
		g := f
		g.Data = bytes.Clone(f.Data)
		frames = append(frames, g)
	}
	return frames
}

// countAlerts counts alerts.
type countAlerts struct{ n int }

func (c *countAlerts) WriteAlert(*detect.Alert) { c.n++ }

// silentSource is a live capture that never sees a frame.
type silentSource struct{}

func (silentSource) ReadFrame(*capture.Frame) error { return capture.ErrTimeout }
func (silentSource) Close() error                   { return nil }

func TestQuietClock(t *testing.T) {
	var q quietClock
	wall := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok := q.at(time.Time{}, wall); ok {
		t.Fatal("a clock before the first packet")
	}
	pkt := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	// The capture goes quiet at wall; 3 s later the clock is 2 s on: a
	// second behind, for frames still on their way.
	if at, ok := q.at(pkt, wall); !ok || !at.Equal(pkt) {
		t.Fatalf("at the quiet's start: %v %v", at, ok)
	}
	at := pkt
	for i := range 3 {
		at, _ = q.at(at, wall.Add(time.Duration(i+1)*time.Second))
	}
	if !at.Equal(pkt.Add(2 * time.Second)) {
		t.Fatalf("3 s into the quiet: %v", at)
	}
	// A new packet restarts the quiet from its own time.
	if at, _ := q.at(pkt.Add(time.Second), wall.Add(5*time.Second)); !at.Equal(pkt.Add(time.Second)) {
		t.Fatalf("after a new packet: %v", at)
	}
}

// TestWorkersDecodeAsConfigured: every decoder the sensor makes (each
// worker's, and the one that reads a region again) follows the VXLAN
// ports and the tenant key; the dedup table is the lone worker's, or,
// with several, the stage's, which the workers' sums feed.
func TestWorkersDecodeAsConfigured(t *testing.T) {
	vni42 := []byte{8, 0, 0, 0, 0, 0, 42, 0} // VXLAN: flags I, VNI 42
	data := append(ethOuter(0x0800), ip4Outer(17, udpOuter(8472, append(vni42, readFrames(t, "reflection-in")[0].Data...)))...)
	eng, err := detect.New(detect.DefaultConfig(), &countAlerts{})
	if err != nil {
		t.Fatal(err)
	}
	tenant, err := capture.ParseTenantKey("vni")
	if err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 3} {
		cfg := Config{Workers: workers, Decoder: capture.DecoderConfig{VXLANPorts: []uint16{8472}, Tenant: tenant},
			Dedup: time.Millisecond}
		s, err := New(cfg, []capture.Source{silentSource{}}, eng)
		if err != nil {
			t.Fatal(err)
		}
		ws := s.workers
		if s.redo != nil {
			ws = append(ws, s.redo)
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
				t.Errorf("a lone worker has no dedup table of its own")
			case workers > 1 && (w.dedup != nil || !w.sums):
				t.Errorf("%d workers, worker %d: a dedup table of its own, or no sums for the stage's", workers, w.id)
			}
		}
		if workers > 1 && s.dedup == nil {
			t.Errorf("%d workers: the stage has no dedup table", workers)
		}
	}
}

// TestPartsMakeTheRegionsChunk decodes a region of the demo capture in
// parts of three records, as a worker sends a region under a flood, and
// whole: the parts, one after the other, must hold the records of the
// whole chunk, note for note (their clock, ticks and packets), and only
// the last chunk may go without more.
func TestPartsMakeTheRegionsChunk(t *testing.T) {
	eng, err := detect.New(detect.DefaultConfig(), &countAlerts{})
	if err != nil {
		t.Fatal(err)
	}
	read := func(part int) (recs []string, chunks int) {
		sp := splitFile(t, filepath.Join("..", "..", "pcaps", "demo.pcap"))
		reg, err := sp.Next()
		if err != nil {
			t.Fatal(err)
		}
		w := &worker{dec: capture.NewDecoder(), wants: eng.Wants, part: part}
		w.dec.SkipFragments()
		c := <-newChunks(1)
		c.src, c.region = reg, reg
		var parts chan *chunk
		out := make(chan *chunk, 10000)
		if part > 0 {
			parts = newChunks(10000)
		}
		last := w.decodeChunk(c, parts, out)
		close(out)
		note := func(c *chunk, more bool) {
			if c.more != more || c.region != reg {
				t.Fatalf("parts of %d: chunk %d: more %v, its region %p (want %v, %p)", part, chunks, c.more, c.region, more, reg)
			}
			for i := range c.recs {
				rec := &c.recs[i]
				recs = append(recs, fmt.Sprintf("%d %v %+v", rec.clock, rec.tick, *c.packet(rec)))
			}
			chunks++
		}
		for p := range out {
			note(p, true)
		}
		note(last, false)
		if last.last != math.MinInt64 {
			recs = append(recs, fmt.Sprint("then ", last.last))
		}
		return recs, chunks
	}
	whole, n := read(0)
	parted, m := read(3)
	if n != 1 || m < len(whole)/4 || len(whole) < 1000 {
		t.Fatalf("%d records in %d chunk(s), then in %d parts", len(whole), n, m)
	}
	if !slices.Equal(parted, whole) {
		for i := range min(len(parted), len(whole)) {
			if parted[i] != whole[i] {
				t.Fatalf("record %d:\n  parts: %s\n  whole: %s", i, parted[i], whole[i])
			}
		}
		t.Fatalf("%d records in parts, %d whole", len(parted), len(whole))
	}
}
