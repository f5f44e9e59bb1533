package main

import (
	"errors"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// worker decodes frames. Alone, it also tracks flows and calls the engine
// (runOne); one of several, it decodes runs of frames and keeps, for the
// engine's goroutine, the few packets detection wants (decodeRun). It
// allocates nothing per packet.
type worker struct {
	_      cacheLinePad
	id     int
	dec    *capture.Decoder
	wants  func(*capture.Packet) bool
	filter capture.Filter // applied here when frames come in runs
	// rawBytes, when frames come in runs, is how much of each kept
	// packet's frame the chunk keeps for evidence files (0: none).
	rawBytes int

	// dedup, with --dedup, drops the second copy of a packet after
	// decoding, before flows and detection (see copied): a lone worker's.
	// One of several only sums the packets it keeps (sums), and the
	// stage's table, which sees them all in capture order, judges them.
	dedup *capture.Dedup
	sums  bool

	frame capture.Frame
	pkt   capture.Packet
	last  time.Time // the newest frame time seen

	// Alone, the worker reads its source and tracks flows.
	src   capture.Source
	flows detect.FlowTable
	// statsDue is set by a timer goroutine; a lone live worker emits stats
	// when it sees it, so the counters are read by the goroutine that owns
	// them.
	statsDue atomic.Bool
	// reload, alone, is polled like statsDue for a config to apply.
	reload *reloader

	// Counted when frames come in chunks: frames the filter rejected, and
	// decoded packets detection does not want (the flow table's untracked).
	rejected, skipped uint64

	// published counters, copied from the worker's own every so often so
	// another goroutine can read them without a lock per packet.
	mu        sync.Mutex
	published workerStats
	_         cacheLinePad
}

type workerStats struct {
	decode            capture.DecodeStats
	flows             detect.FlowStats // alone
	last              time.Time
	rejected, skipped uint64
	// Packets --dedup took for copies, and pushed out of its table.
	dedupDropped, dedupEvicted uint64
}

// newWorker returns worker id, with a decoder as cfg configures it.
func newWorker(id int, cfg config, eng *detect.Engine) (*worker, error) {
	dc, err := cfg.decoderConfig()
	if err != nil {
		return nil, err
	}
	w := &worker{id: id, wants: eng.Wants}
	if w.dec, err = capture.NewDecoderWith(dc); err != nil {
		return nil, err
	}
	if cfg.Dedup > 0 {
		if w.dedup, err = capture.NewDedup(cfg.Dedup); err != nil {
			return nil, usagef("--dedup: %v", err)
		}
	}
	return w, nil
}

// cacheLinePad keeps the fields that a goroutine writes for every frame
// off the cache lines of whatever the allocator put next to them (another
// worker's fields, a channel), which other cores write.
type cacheLinePad [64]byte

// publishEvery is how many frames pass between two copies of the counters.
const publishEvery = 1 << 14

func (w *worker) publish() {
	s := workerStats{decode: w.dec.Stats(), last: w.last, rejected: w.rejected, skipped: w.skipped}
	if w.flows != nil {
		s.flows = w.flows.Stats()
	}
	if w.dedup != nil {
		s.dedupDropped, s.dedupEvicted = w.dedup.Stats()
	}
	w.mu.Lock()
	w.published = s
	w.mu.Unlock()
}

func (w *worker) stats() workerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.published
}

// readError sorts an error from ReadFrame: done at the end of the input (or
// of a live capture closed by a stop), a capture file's error to warn about
// and go on from, or a failure. ErrTimeout is the caller's.
func readError(err error, warnings *[]error) (done bool, _ error) {
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	ws, err := inputErrors(err)
	*warnings = append(*warnings, ws...)
	return err != nil, err
}

// inputErrors sorts err, one error or several joined (as a Region's
// Check gives them), into the errors of capture files, which are warnings:
// a file cut short, a damaged stretch skipped, a file that could not be
// read; the reading goes on after them. The rest is a failure.
func inputErrors(err error) (warnings []error, failure error) {
	if err == nil {
		return nil, nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var failures []error
	for _, err := range errs {
		if ie := (*capture.InputError)(nil); errors.As(err, &ie) {
			warnings = append(warnings, err)
		} else {
			failures = append(failures, err)
		}
	}
	return warnings, errors.Join(failures...)
}

// runOne is the whole pipeline on one goroutine: the worker reads its
// source, decodes every frame, accounts it to its flow and hands it to the
// engine. idle is called on a live read timeout, tick when the stats
// period is due.
func (w *worker) runOne(eng *detect.Engine, idle, tick func()) (warnings []error, err error) {
	var n uint
	defer w.publish()
	for {
		if err := w.src.ReadFrame(&w.frame); err != nil {
			if errors.Is(err, capture.ErrTimeout) {
				if idle != nil {
					idle()
				}
				w.maybeTick(tick)
				w.reload.apply()
				continue
			}
			if done, err := readError(err, &warnings); done {
				return warnings, err
			}
			continue
		}
		if n++; n%publishEvery == 0 {
			w.publish()
		}
		w.maybeTick(tick)
		w.reload.apply()
		if w.frame.Timestamp.After(w.last) {
			w.last = w.frame.Timestamp
		}
		if w.dec.Decode(&w.frame, &w.pkt) != capture.DropNone || w.copied(&w.pkt) {
			// Every frame moves packet time, decoded or not, kept or
			// not, as it does when several workers decode the frames.
			eng.Tick(w.frame.Timestamp)
			continue
		}
		f, dir := w.flows.Update(&w.pkt)
		eng.Packet(&w.pkt, f, dir)
	}
}

// copied reports whether --dedup drops p as a copy. Only the packets that
// go on to flows and detection are looked at (IP fragments, and what
// detection wants: about 1% of ordinary traffic); the others are counted
// and forgotten, copy or not, and would only pay for the look-up.
func (w *worker) copied(p *capture.Packet) bool {
	return w.dedup != nil && (p.Fragment || w.wants(p)) && w.dedup.Seen(p)
}

// maybeTick emits stats when they are due. It costs one atomic load per
// frame, and no lock.
func (w *worker) maybeTick(tick func()) {
	if tick != nil && w.statsDue.Load() && w.statsDue.CompareAndSwap(true, false) {
		w.publish()
		tick()
	}
}

// chunk is a stretch of consecutive frames that one worker decodes, and
// what it keeps of them for the engine: the packets detection wants, the IP
// fragments (whose ports only a table that sees them all in order can
// give), and the times at which packet time entered a new second.
type chunk struct {
	_      cacheLinePad    // a worker writes it for every packet it keeps
	src    capture.Source  // the frames: a region of a file, or frames a dealer copied
	region *capture.Region // src, when it is a region: the stage checks it
	recs   []record
	pays   []byte // the records' payloads
	// last is the latest frame time of the chunk, Unix ns (math.MinInt64
	// for none): it moves the engine's clock past frames nobody wanted.
	last    int64
	nextSec int64 // when last enters a new second
	err     error // what ended the input in this chunk, after its frames
	first   time.Time
	home    chan *chunk // where the chunk goes back when the engine is done
	spare   *copied     // a dealer's copies, kept for the chunk's next use
	_       cacheLinePad
}

// record is a packet for the engine, or only the passing of time (tick).
type record struct {
	// clock is the latest frame time of the chunk up to this frame, Unix
	// ns; the engine's clock is the larger of it and the clock at the
	// start of the chunk.
	clock int64
	tick  bool
	pkt   capture.Packet
	// sum is the packet's capture.DedupSum, when hasSum (--dedup).
	sum    uint64
	hasSum bool
	// pay, npay locate in the chunk's payloads the start of the packet's
	// payload: enough for every payload detection looks at (nmap probes,
	// Wake-on-LAN). raw, nraw locate there the start of its frame, when
	// evidence is kept.
	pay, npay int
	raw, nraw int
}

const recordPayload = 256

func (r *chunk) reset() {
	r.src, r.region, r.recs, r.pays, r.err = nil, nil, r.recs[:0], r.pays[:0], nil
	r.last, r.nextSec = math.MinInt64, math.MinInt64
}

// add appends a record, reusing the chunk's records from before.
func (r *chunk) add(clock int64) *record {
	if len(r.recs) < cap(r.recs) {
		r.recs = r.recs[:len(r.recs)+1]
	} else {
		r.recs = append(r.recs, record{})
	}
	rec := &r.recs[len(r.recs)-1]
	rec.clock, rec.tick = clock, false
	return rec
}

// addPacket keeps p for the engine, with the start of its payload and
// rawBytes of its frame.
func (r *chunk) addPacket(p *capture.Packet, clock int64, rawBytes int) {
	rec := r.add(clock)
	rec.pkt = *p
	rec.pay = len(r.pays)
	r.pays = append(r.pays, p.Payload[:min(len(p.Payload), recordPayload)]...)
	rec.npay = len(r.pays) - rec.pay
	rec.raw = len(r.pays)
	r.pays = append(r.pays, p.Raw[:min(len(p.Raw), rawBytes)]...)
	rec.nraw = len(r.pays) - rec.raw
}

// packet returns the packet of rec, a record of r, with its bytes.
func (r *chunk) packet(rec *record) *capture.Packet {
	p := &rec.pkt
	p.Payload = r.pays[rec.pay : rec.pay+rec.npay : rec.pay+rec.npay]
	p.Raw = r.pays[rec.raw : rec.raw+rec.nraw : rec.raw+rec.nraw]
	return p
}

// keep looks at w.frame, which the chunk has just read: it moves the chunk's
// clock, telling the engine when it enters a new second, decodes the
// frame and keeps what the engine wants.
func (w *worker) keep(r *chunk) {
	if w.filter != nil && !w.filter.Match(&w.frame) {
		w.rejected++
		return
	}
	if ts := w.frame.Timestamp.UnixNano(); ts > r.last {
		if ts >= r.nextSec {
			r.add(ts).tick = true
			r.nextSec = (w.frame.Timestamp.Unix() + 1) * 1e9
		}
		r.last = ts
	}
	if w.frame.Timestamp.After(w.last) {
		w.last = w.frame.Timestamp
	}
	if w.dec.Decode(&w.frame, &w.pkt) != capture.DropNone || w.copied(&w.pkt) {
		return
	}
	if w.pkt.Fragment || w.wants(&w.pkt) {
		r.addPacket(&w.pkt, r.last, w.rawBytes)
		if w.sums {
			rec := &r.recs[len(r.recs)-1]
			rec.sum, rec.hasSum = capture.DedupSum(&w.pkt)
		}
		return
	}
	w.skipped++
}

// decodeChunks decodes the chunks that come in, and sends each on, in order,
// once done.
func (w *worker) decodeChunks(in <-chan *chunk, out chan<- *chunk) {
	for r := range in {
		w.decodeChunk(r)
		w.publish()
		out <- r
	}
}

// decodeChunk reads and decodes the frames of r, keeping what the engine
// wants.
func (w *worker) decodeChunk(r *chunk) {
	if r.src == nil {
		return
	}
	for {
		err := r.src.ReadFrame(&w.frame)
		if err != nil {
			if err != io.EOF {
				r.err = err
			}
			break
		}
		w.keep(r)
	}
	r.src.Close()
	r.src = nil
}

// Chunks in flight per worker: enough to keep every goroutine busy, few
// enough to bound memory and keep the frames in the CPU's caches.
const chunksPerWorker = 2

// Live, a worker sends its chunk to the engine when it holds liveBatch
// records, or liveLatency of packet time after its first, or when the
// capture is quiet.
const (
	liveBatch   = 256
	liveLatency = 20 * time.Millisecond
)

func newChunks(n int) chan *chunk {
	free := make(chan *chunk, n)
	for range n {
		r := &chunk{home: free}
		r.reset()
		free <- r
	}
	return free
}

// readFanout is a live worker that reads its own source (an AF_PACKET
// socket of a fanout group, whose hash deals the frames) and sends the
// engine chunks of what it keeps.
func (w *worker) readFanout(out chan<- *chunk) error {
	free := newChunks(chunksPerWorker)
	var warnings []error
	var n uint
	var r *chunk
	send := func() {
		if r != nil && len(r.recs) > 0 {
			out <- r
			r = nil
		}
	}
	defer func() { send(); w.publish() }()
	for {
		if err := w.src.ReadFrame(&w.frame); err != nil {
			if errors.Is(err, capture.ErrTimeout) {
				send()
				w.publish()
				continue
			}
			if done, err := readError(err, &warnings); done {
				return errors.Join(append(warnings, err)...)
			}
			continue
		}
		if n++; n%publishEvery == 0 {
			w.publish()
		}
		if r == nil {
			r = <-free
			r.first = w.frame.Timestamp
		}
		w.keep(r)
		if len(r.recs) >= liveBatch || w.frame.Timestamp.Sub(r.first) >= liveLatency {
			send()
		}
	}
}
