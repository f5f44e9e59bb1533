package main

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/report"
)

// progress redraws one status line of an offline run on a terminal: how
// much of the input is read, packets, packets per second, incidents so far
// and the time left. start draws every interval on its own goroutine until
// stop, which clears the line; the counter functions are called from that
// goroutine and must be safe to call while the run goes on.
type progress struct {
	w         io.Writer
	total     func() (bytesRead, bytesTotal, packets uint64)
	incidents func() int

	every  time.Duration    // between two redraws
	window time.Duration    // over which rates are measured
	now    func() time.Time // the wall clock; tests set their own

	mu      sync.Mutex // held while drawing, so stop's clear comes last
	hist    []progressSample
	drawn   bool
	running bool // start was called

	stopc chan struct{}
	done  chan struct{}
	once  sync.Once
}

type progressSample struct {
	t              time.Time
	bytes, packets uint64
}

// newProgress returns a progress line on w. total reports the bytes read
// and the bytes there are to read (0 if unknown), and the packets read;
// incidents reports the incidents so far.
func newProgress(w io.Writer, total func() (bytesRead, bytesTotal, packets uint64), incidents func() int) *progress {
	return &progress{
		w: w, total: total, incidents: incidents,
		every: 200 * time.Millisecond, window: 5 * time.Second, now: time.Now,
		stopc: make(chan struct{}), done: make(chan struct{}),
	}
}

// start takes the first measure and redraws the line every interval until
// stop. It is called once.
func (p *progress) start() {
	p.mu.Lock()
	p.measure(p.now())
	p.running = true
	p.mu.Unlock()
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.stopc:
				return
			}
		}
	}()
}

// stop ends the redraws and clears the line. It is safe to call twice,
// and without start.
func (p *progress) stop() {
	p.once.Do(func() {
		close(p.stopc)
		p.mu.Lock()
		running := p.running
		p.mu.Unlock()
		if running {
			<-p.done
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.drawn {
			io.WriteString(p.w, "\r\x1b[K")
			p.drawn = false
		}
	})
}

// draw measures and redraws the line once.
func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b bytes.Buffer
	b.WriteString("\r")
	b.Write(p.line(p.now()))
	b.WriteString("\x1b[K")
	p.w.Write(b.Bytes())
	p.drawn = true
}

// measure records the counters at now, keeping a window of history.
func (p *progress) measure(now time.Time) (cur, old progressSample, total uint64) {
	read, total, packets := p.total()
	cur = progressSample{t: now, bytes: read, packets: packets}
	p.hist = append(p.hist, cur)
	// Keep the newest sample at least a window old, for the rates.
	drop := 0
	for drop+1 < len(p.hist) && now.Sub(p.hist[drop+1].t) >= p.window {
		drop++
	}
	p.hist = append(p.hist[:0], p.hist[drop:]...)
	return cur, p.hist[0], total
}

// line is the status line at now, without the terminal controls:
//
//	echowatch: 42.1 MB of 100.0 MB, 42%, 1234567 packets, 250.0k pkt/s, 3 incidents, 0:23 left
//
// With the total unknown (a compressed input, standard input), the bytes
// are those of the packets read and the percent and time left are "?".
func (p *progress) line(now time.Time) []byte {
	cur, old, total := p.measure(now)
	b := []byte("echowatch: ")
	b = append(b, report.FormatBytes(cur.bytes)...)
	if total > 0 {
		b = append(b, " of "...)
		b = append(b, report.FormatBytes(total)...)
		b = append(b, ", "...)
		b = strconv.AppendUint(b, min(cur.bytes, total)*100/total, 10)
		b = append(b, "%, "...)
	} else {
		b = append(b, " read, ?%, "...)
	}
	b = strconv.AppendUint(b, cur.packets, 10)
	b = append(b, " packets, "...)
	dt := cur.t.Sub(old.t).Seconds()
	if dt > 0 && cur.packets >= old.packets {
		b = append(b, report.FormatCount(float64(cur.packets-old.packets)/dt)...)
	} else {
		b = append(b, '?')
	}
	b = append(b, " pkt/s, "...)
	b = append(b, report.Plural(p.incidents(), "incident")...)
	b = append(b, ", "...)
	if total > 0 && dt > 0 && cur.bytes > old.bytes {
		rate := float64(cur.bytes-old.bytes) / dt
		left := time.Duration(float64(total-min(cur.bytes, total)) / rate * float64(time.Second))
		b = append(b, formatClock(left)...)
	} else {
		b = append(b, '?')
	}
	return append(b, " left"...)
}

// formatClock writes a time left as a clock does: "0:07", "12:34",
// "1:02:03".
func formatClock(d time.Duration) string {
	s := int64((d + time.Second/2) / time.Second)
	h, m, sec := s/3600, s/60%60, s%60
	two := func(v int64) string {
		if v < 10 {
			return "0" + strconv.FormatInt(v, 10)
		}
		return strconv.FormatInt(v, 10)
	}
	if h > 0 {
		return strconv.FormatInt(h, 10) + ":" + two(m) + ":" + two(sec)
	}
	return strconv.FormatInt(m, 10) + ":" + two(sec)
}

// fileProgress returns the counters of the progress line for an offline
// run, from the FileStats of its source: how far into each file the frames
// read reach, against the sizes on disk; several files are read side by
// side, merged by time, so each counts its own position. A gzip-compressed
// input is read in bytes that its size on disk does not measure, and a
// pipe has no size: with any such input the total is unknown (0) and the
// bytes are those of the packets read.
func fileProgress(stats func() []capture.FileStats) func() (bytesRead, bytesTotal, packets uint64) {
	return func() (bytesRead, bytesTotal, packets uint64) {
		var captured uint64
		sized := true
		for _, s := range stats() {
			packets += s.Frames
			captured += s.Bytes
			bytesTotal += s.Size
			sized = sized && s.Size > 0
			pos := s.Offset
			if s.Err != nil {
				pos = s.Size // given up on
			}
			bytesRead += min(pos, s.Size)
		}
		if !sized {
			return captured, 0, packets
		}
		return bytesRead, bytesTotal, packets
	}
}

// fileStatsOf returns the FileStats of an offline run's source, looking
// through wrappers such as capture.FilteredSource.
func fileStatsOf(src capture.Source) (func() []capture.FileStats, bool) {
	for src != nil {
		if fs, ok := src.(interface{ FileStats() []capture.FileStats }); ok {
			return fs.FileStats, true
		}
		u, ok := src.(interface{ Unwrap() capture.Source })
		if !ok {
			break
		}
		src = u.Unwrap()
	}
	return nil, false
}
