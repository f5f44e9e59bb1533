package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// fakeCounters stand in for a run: the test sets what has been read.
type fakeCounters struct {
	mu                   sync.Mutex
	read, total, packets uint64
	incidents            int
}

func (c *fakeCounters) set(read, total, packets uint64, incidents int) {
	c.mu.Lock()
	c.read, c.total, c.packets, c.incidents = read, total, packets, incidents
	c.mu.Unlock()
}

func (c *fakeCounters) counts() (uint64, uint64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read, c.total, c.packets
}

func (c *fakeCounters) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.incidents
}

// syncBuffer is a bytes.Buffer for a writer on another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProgressLine(t *testing.T) {
	var out bytes.Buffer
	var c fakeCounters
	p := newProgress(&out, c.counts, c.count)
	now := t0
	p.now = func() time.Time { return now }
	p.every = time.Hour // the test draws; the ticker never does

	c.set(0, 100e6, 0, 0)
	p.start()
	now = at(time.Second)
	c.set(10e6, 100e6, 50000, 2)
	p.draw()
	want := "\rechowatch: 10.0 MB of 100.0 MB, 10%, 50000 packets, 50.0k pkt/s, 2 incidents, 0:09 left\x1b[K"
	if got := out.String(); got != want {
		t.Errorf("first line\n got %q\nwant %q", got, want)
	}

	// Rates are over the last five seconds: at 11 s, from 6 s.
	for s := 2; s <= 11; s++ {
		now = at(time.Duration(s) * time.Second)
		c.set(uint64(s)*5e6+5e6, 100e6, uint64(s)*1000, 3)
		out.Reset()
		p.draw()
	}
	// 5 MB/s over the window; 40 MB left.
	want = "\rechowatch: 60.0 MB of 100.0 MB, 60%, 11000 packets, 1000.0 pkt/s, 3 incidents, 0:08 left\x1b[K"
	if got := out.String(); got != want {
		t.Errorf("line at 11 s\n got %q\nwant %q", got, want)
	}

	out.Reset()
	p.stop()
	if got := out.String(); got != "\r\x1b[K" {
		t.Errorf("stop wrote %q, want the line cleared", got)
	}
	out.Reset()
	p.stop()
	if out.Len() != 0 {
		t.Errorf("a second stop wrote %q", out.String())
	}
}

// TestProgressUnknownTotal: with a compressed input, neither the percent
// nor the time left can be known, and the line says so.
func TestProgressUnknownTotal(t *testing.T) {
	var out bytes.Buffer
	var c fakeCounters
	p := newProgress(&out, c.counts, c.count)
	now := t0
	p.now = func() time.Time { return now }
	p.measure(now)
	now = at(2 * time.Second)
	c.set(3_500_000, 0, 7000, 1)
	p.draw()
	want := "\rechowatch: 3.5 MB read, ?%, 7000 packets, 3500.0 pkt/s, 1 incident, ? left\x1b[K"
	if got := out.String(); got != want {
		t.Errorf("line\n got %q\nwant %q", got, want)
	}
}

// TestProgressTicker runs the real ticker: the line is redrawn on its own
// until stop, which clears it last.
func TestProgressTicker(t *testing.T) {
	var out syncBuffer
	var c fakeCounters
	c.set(1000, 2000, 10, 0)
	p := newProgress(&out, c.counts, c.count)
	p.every = time.Millisecond
	p.start()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\rechowatch: ") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no redraws in 10 s: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	p.stop()
	got := out.String()
	if !strings.HasSuffix(got, "\x1b[K\r\x1b[K") || !strings.Contains(got, "1.0 kB of 2.0 kB, 50%, 10 packets") {
		t.Errorf("output %q: want redraws of the line, then the line cleared", got)
	}
	time.Sleep(5 * time.Millisecond)
	if again := out.String(); again != got {
		t.Errorf("the line was drawn after stop: %q", strings.TrimPrefix(again, got))
	}

	// stop without start does nothing.
	var quiet bytes.Buffer
	newProgress(&quiet, c.counts, c.count).stop()
	if quiet.Len() != 0 {
		t.Errorf("stop without start wrote %q", quiet.String())
	}
}

func TestProgressClock(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0:00", 7 * time.Second: "0:07", 754 * time.Second: "12:34", 3723 * time.Second: "1:02:03",
		1500 * time.Millisecond: "0:02",
	} {
		if got := formatClock(d); got != want {
			t.Errorf("formatClock(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestProgressFiles checks the estimate of a real run's position, from
// what the source says of where it is in each file: for a classic pcap,
// exactly its headers and the frames read.
func TestProgressFiles(t *testing.T) {
	demo := pcap("demo.pcap")
	info, err := os.Stat(demo)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(info.Size())
	dir := t.TempDir()
	gz := filepath.Join(dir, "demo.pcap.gz")
	writeGzip(t, demo, gz)

	cases := []struct {
		name  string
		paths []string
		total uint64 // 0: unknown
	}{
		{"pcap", []string{demo}, size},
		{"two files", []string{demo, demo}, 2 * size},
		{"gzip", []string{gz}, 0},
		{"pcap then gzip", []string{demo, gz}, 0},
		{"standard input", []string{"-"}, 0},
		{"pcap then standard input", []string{demo, "-"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdin, err := os.Open(demo)
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			src, err := capture.OpenFiles(c.paths, stdin)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			stats, ok := fileStatsOf(capture.Filtered(src, nil))
			if !ok {
				t.Fatal("fileStatsOf found no FileStats behind a FilteredSource")
			}
			counters := fileProgress(stats)
			if read, total, packets := counters(); read != 0 || total != c.total || packets != 0 {
				t.Errorf("before reading: %d of %d bytes, %d packets; want 0 of %d, 0", read, total, packets, c.total)
			}
			var f capture.Frame
			var frames, captured uint64
			for {
				err := src.ReadFrame(&f)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				frames++
				captured += uint64(f.CaptureLength)
				if frames == 1000 && c.total != 0 {
					// Midway through the first file: its 24-byte header,
					// 1000 16-byte record headers and the frames.
					if read, _, _ := counters(); read != 24+16*1000+captured {
						t.Errorf("after 1000 frames: %d bytes read, want %d", read, 24+16*1000+captured)
					}
				}
			}
			read, total, packets := counters()
			want := c.total
			if c.total == 0 {
				want = captured // the bytes of the packets, for lack of better
			}
			if read != want || total != c.total || packets != frames {
				t.Errorf("at the end: %d of %d bytes, %d packets; want %d of %d, %d", read, total, packets, want, c.total, frames)
			}
		})
	}
}

func writeGzip(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(b)
	w.Close()
	if err := os.WriteFile(to, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
