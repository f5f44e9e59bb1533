package main

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// worker reads frames from one source, decodes them, accounts them to
// their flows and hands them to the next stage: the detection engine
// itself, or a forwarder to it when several workers feed one engine. It
// allocates nothing per packet.
type worker struct {
	src   capture.Source
	dec   *capture.Decoder
	flows detect.FlowTable
	next  detect.Detector
	// idle is called on a live read timeout, and tick when the stats
	// period is due; both run on the worker's goroutine.
	idle func()
	tick func()

	frame capture.Frame
	pkt   capture.Packet
	last  time.Time // the newest packet time seen

	// statsDue is set by a timer goroutine; the worker emits stats when
	// it sees it, so the counters are read by the goroutine that owns them.
	statsDue atomic.Bool

	// published counters, copied from the worker's own every so often so
	// another goroutine can read them without a lock per packet.
	mu        sync.Mutex
	published workerStats
}

type workerStats struct {
	decode capture.DecodeStats
	flows  detect.FlowStats
	last   time.Time
}

// publishEvery is how many frames pass between two copies of the counters.
const publishEvery = 1 << 14

// run processes frames until the source ends. io.EOF is a normal end; a
// truncated file is returned as its error for the caller to warn about.
func (w *worker) run() error {
	var n uint
	defer w.publish()
	for {
		err := w.src.ReadFrame(&w.frame)
		if err != nil {
			switch {
			case errors.Is(err, capture.ErrTimeout):
				if w.idle != nil {
					w.idle()
				}
				w.maybeTick()
				continue
			case errors.Is(err, io.EOF):
				return nil
			}
			return err
		}
		if n++; n%publishEvery == 0 {
			w.publish()
		}
		w.maybeTick()
		if w.dec.Decode(&w.frame, &w.pkt) != capture.DropNone {
			continue
		}
		if w.pkt.Timestamp.After(w.last) {
			w.last = w.pkt.Timestamp
		}
		f, dir := w.flows.Update(&w.pkt)
		w.next.Packet(&w.pkt, f, dir)
	}
}

// maybeTick emits stats when they are due. It costs one atomic load per
// frame, and no lock.
func (w *worker) maybeTick() {
	if w.tick != nil && w.statsDue.Load() && w.statsDue.CompareAndSwap(true, false) {
		w.publish()
		w.tick()
	}
}

func (w *worker) publish() {
	s := workerStats{decode: w.dec.Stats(), flows: w.flows.Stats(), last: w.last}
	w.mu.Lock()
	w.published = s
	w.mu.Unlock()
}

func (w *worker) stats() workerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.published
}

// Several workers (an AF_PACKET fanout group) feed one detection engine,
// so that per-victim and per-scanner state sees all traffic. Workers copy
// what detection needs into batches; the engine's goroutine replays them.
const (
	batchSize = 256
	// recordPayload bounds the payload bytes a record carries: enough for
	// every payload detection looks at (nmap probes, Wake-on-LAN, echoed
	// data prefixes).
	recordPayload    = 256
	batchesPerWorker = 8
)

type record struct {
	pkt     capture.Packet
	flow    detect.Flow
	hasFlow bool
	dir     detect.Dir
	payload [recordPayload]byte
}

type batch struct {
	recs [batchSize]record
	n    int
	home chan *batch // the forwarder's free list
}

// forwarder is the Detector a worker feeds when it does not own the
// engine: it copies each packet into a batch bound for the engine.
type forwarder struct {
	out  chan<- *batch
	free chan *batch
	cur  *batch
}

var _ detect.Detector = (*forwarder)(nil)

func newForwarder(out chan<- *batch) *forwarder {
	f := &forwarder{out: out, free: make(chan *batch, batchesPerWorker)}
	for range batchesPerWorker {
		f.free <- &batch{home: f.free}
	}
	return f
}

func (f *forwarder) Packet(p *capture.Packet, fl *detect.Flow, dir detect.Dir) {
	if f.cur == nil {
		f.cur = <-f.free
	}
	r := &f.cur.recs[f.cur.n]
	r.pkt = *p
	n := copy(r.payload[:], p.Payload)
	r.pkt.Payload = r.payload[:n]
	r.hasFlow = fl != nil
	if fl != nil {
		r.flow = *fl
	}
	r.dir = dir
	if f.cur.n++; f.cur.n == batchSize {
		f.send()
	}
}

// Flush sends what the current batch holds.
func (f *forwarder) Flush(time.Time) { f.send() }

func (f *forwarder) send() {
	if f.cur != nil && f.cur.n > 0 {
		f.out <- f.cur
		f.cur = nil
	}
}

// runMany runs each worker on its own goroutine and the engine on this one.
func runMany(workers []*worker, engine *detect.Engine, cfg config, emitStats func()) error {
	batches := make(chan *batch, batchesPerWorker*len(workers))
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		fw := newForwarder(batches)
		w.next = fw
		w.idle = func() { fw.send(); w.publish() }
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.run()
			fw.send()
		}()
	}
	go func() { wg.Wait(); close(batches) }()

	var tick <-chan time.Time
	if cfg.Stats {
		t := time.NewTicker(cfg.StatsInterval)
		defer t.Stop()
		tick = t.C
	}
	// While no batch comes, move detection's clock on by wall time, as
	// idleClock does for a single worker.
	quiet := time.NewTicker(250 * time.Millisecond)
	defer quiet.Stop()
	var last, seen, quietSince time.Time
	for {
		select {
		case now := <-quiet.C:
			if !last.Equal(seen) {
				seen, quietSince = last, now
			} else if !seen.IsZero() {
				engine.Tick(seen.Add(now.Sub(quietSince)))
			}
		case b, ok := <-batches:
			if !ok {
				engine.Flush(last)
				return errors.Join(errs...)
			}
			for i := range b.recs[:b.n] {
				r := &b.recs[i]
				var fl *detect.Flow
				if r.hasFlow {
					fl = &r.flow
				}
				if r.pkt.Timestamp.After(last) {
					last = r.pkt.Timestamp
				}
				engine.Packet(&r.pkt, fl, r.dir)
			}
			b.n = 0
			b.home <- b
		case <-tick:
			emitStats()
		}
	}
}
