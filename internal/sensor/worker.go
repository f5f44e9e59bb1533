package sensor

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// worker decodes frames. Alone, it also tracks flows and calls the engine
// (runOne); one of several, it decodes chunks of frames and keeps, for the
// engine's goroutine, the few packets detection wants (decodeChunk). It
// allocates nothing per packet.
type worker struct {
	// The pads keep the fields that the worker writes for every frame off
	// the cache lines of whatever the allocator put next to it (another
	// worker, a channel), which other cores write.
	_      cpu.CacheLinePad
	id     int
	dec    *capture.Decoder
	wants  func(*capture.Packet) bool
	filter capture.Filter // applied here when frames come in chunks
	// rawBytes, when frames come in chunks, is how much of each kept
	// packet's frame the chunk keeps for evidence files (0: none).
	rawBytes int
	// part is how many records fill a part of a region (partRecords).
	part int

	// dedup, with Config.Dedup, drops the second copy of a packet after
	// decoding, before flows and detection (see isCopy): a lone worker's.
	// One of several only sums the packets it keeps (sums), and the
	// stage's table, which sees them all in capture order, judges them.
	dedup *capture.Dedup
	sums  bool

	frame capture.Frame
	pkt   capture.Packet

	// Alone, the worker reads its source, tracks flows and runs the
	// hooks that due marks (tickDue, reloadDue): a goroutine of
	// startHooks sets the bits, and the worker looks at them once per
	// frame, with no lock.
	src      capture.Source
	flows    detect.FlowTable
	quiet    quietClock // live: moves the clock on while no frame comes
	due      atomic.Uint32
	ticker   Ticker
	reloader Reloader

	// Counted when frames come in chunks: frames the filter rejected, and
	// decoded packets detection does not want (the flow table's untracked).
	// Alone, skipped counts the packets the decoder Skipped, which the
	// flow table never sees.
	rejected, skipped uint64

	// published counters, copied from the worker's own every so often so
	// another goroutine can read them without a lock per packet.
	mu        sync.Mutex
	published workerStats
	_         cpu.CacheLinePad
}

// The hooks a lone worker runs when their bit of worker.due is set.
const (
	tickDue uint32 = 1 << iota
	reloadDue
)

type workerStats struct {
	decode            capture.DecodeStats
	flows             detect.FlowStats // alone
	rejected, skipped uint64
	// Packets Config.Dedup took for copies, and pushed out of its table.
	dedupDropped, dedupEvicted uint64
	// The router telemetry source's counters, when it is the worker's.
	telemetry *capture.TelemetryStats
}

// newWorker returns worker id, with a decoder as cfg configures it that
// skips the packets eng finds of no interest; wants is eng.Wants.
func newWorker(id int, cfg Config, eng *detect.Engine) (*worker, error) {
	w := &worker{id: id, wants: eng.Wants, part: cmp.Or(cfg.partRecords, partRecords)}
	dc := cfg.Decoder
	if cfg.Dedup == 0 && !cfg.fullDecode {
		// Dedup judges decoded packets: it gets them all decoded.
		dc.Interest = eng
	}
	var err error
	if w.dec, err = capture.NewDecoderWith(dc); err != nil {
		return nil, fmt.Errorf("sensor: %w", err)
	}
	if cfg.Dedup > 0 {
		if w.dedup, err = capture.NewDedup(cfg.Dedup); err != nil {
			return nil, fmt.Errorf("sensor: %w", err)
		}
	}
	return w, nil
}

// publishEvery is how many frames pass between two copies of the counters.
const publishEvery = 1 << 14

func (w *worker) publish() {
	s := workerStats{decode: w.dec.Stats(), rejected: w.rejected, skipped: w.skipped}
	if w.flows != nil {
		s.flows = w.flows.Stats()
	}
	if w.dedup != nil {
		s.dedupDropped, s.dedupEvicted = w.dedup.Stats()
	}
	if t, ok := w.src.(*capture.Telemetry); ok {
		ts := t.Stats()
		s.telemetry = &ts
	}
	w.mu.Lock()
	w.published = s
	w.mu.Unlock()
}

// tally returns what w has counted of the frames it read: its decoder's
// counters, and the frames rejected and packets skipped.
func (w *worker) tally() workerStats {
	return workerStats{decode: w.dec.Stats(), rejected: w.rejected, skipped: w.skipped}
}

// add adds the decoder's counters, and the frames rejected and packets
// skipped, of o to s; sub takes them out.
func (s *workerStats) add(o workerStats) {
	s.decode.Add(o.decode)
	s.rejected += o.rejected
	s.skipped += o.skipped
}

func (s *workerStats) sub(o workerStats) {
	s.decode.Sub(o.decode)
	s.rejected -= o.rejected
	s.skipped -= o.skipped
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

// runOne is the whole run on one goroutine: the worker reads its source,
// decodes every frame, accounts it to its flow and hands it to the engine.
// Live, a read timeout moves detection's clock on (see quietClock).
func (w *worker) runOne(eng *detect.Engine, live bool) (warnings []error, err error) {
	var n uint
	defer w.publish()
	for {
		if err := w.src.ReadFrame(&w.frame); err != nil {
			if errors.Is(err, capture.ErrTimeout) {
				if live {
					if at, ok := w.quiet.at(eng.Now(), time.Now()); ok {
						eng.Tick(at)
					}
				}
				w.runHooks()
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
		if w.due.Load() != 0 {
			w.runHooks()
		}
		r := w.dec.Decode(&w.frame, &w.pkt)
		if w.pkt.Skipped {
			// What Stamp, Flows.Update (untracked) and Packet would
			// have done with it.
			if eng.Frame(detect.FrameNanos(w.frame.Timestamp)) {
				w.skipped++
			}
			continue
		}
		if r != capture.DropNone || w.isCopy(&w.pkt) {
			// Every frame moves packet time, decoded or not, kept or
			// not, as it does when several workers decode the frames.
			eng.Frame(detect.FrameNanos(w.frame.Timestamp))
			continue
		}
		if !eng.Stamp(&w.pkt) {
			continue // no time to count it at
		}
		f, dir := w.flows.Update(&w.pkt)
		eng.Packet(&w.pkt, f, dir)
	}
}

// runHooks runs the hooks marked due, on the lone worker's goroutine: the
// Ticker after the counters are published for it, then the Reloader.
func (w *worker) runHooks() {
	due := w.due.Swap(0)
	if due&tickDue != 0 {
		w.publish()
		w.ticker.Tick()
	}
	if due&reloadDue != 0 {
		w.reloader.Apply()
	}
}

// isCopy reports whether Config.Dedup drops p as a copy. Only the packets
// that go on to flows and detection are looked at (IP fragments, and what
// detection wants: about 1% of ordinary traffic); the others are counted
// and forgotten, copy or not, and would only pay for the look-up.
func (w *worker) isCopy(p *capture.Packet) bool {
	return w.dedup != nil && (p.Fragment || w.wants(p)) && w.dedup.Seen(p)
}

// keep looks at w.frame, which c's source has just given: it notes its
// time for detection's clock (chunk.see), decodes the frame and keeps what
// the engine wants.
func (w *worker) keep(c *chunk) {
	if w.filter != nil && !w.filter.Match(&w.frame) {
		w.rejected++
		return
	}
	c.see(detect.FrameNanos(w.frame.Timestamp))
	r := w.dec.Decode(&w.frame, &w.pkt)
	if w.pkt.Skipped {
		w.skipped++ // as a packet not wanted, below
		return
	}
	if r != capture.DropNone || w.isCopy(&w.pkt) {
		return
	}
	if w.pkt.Fragment || w.wants(&w.pkt) {
		c.addPacket(&w.pkt, w.rawBytes)
		if w.sums {
			rec := &c.recs[len(c.recs)-1]
			rec.sum, rec.hasSum = capture.DedupSum(&w.pkt)
		}
		return
	}
	w.skipped++
}

// decodeChunks decodes the chunks that come in, and sends each on, in order,
// once done. A region of a file whose records fill parts goes out in
// parts as it is decoded (see chunk.more), so that its records reach the
// engine's goroutine while they are still in the caches.
func (w *worker) decodeChunks(in <-chan *chunk, out chan<- *chunk) {
	parts := newChunks(partsPerWorker)
	for c := range in {
		c = w.decodeChunk(c, parts, out)
		w.publish()
		out <- c
	}
}

// decodeChunk reads and decodes the frames of c, keeping what the engine
// wants, and closes c's source. It returns the chunk with the last of
// them: c, unless c is a region and parts is not nil (a worker's), when
// each chunk that holds w.part records goes to out as a part, and a
// chunk from parts takes the records that follow.
func (w *worker) decodeChunk(c *chunk, parts chan *chunk, out chan<- *chunk) *chunk {
	src, reg := c.src, c.region
	if src == nil {
		return c
	}
	var before workerStats
	if reg != nil {
		before = w.tally()
	}
	for {
		err := src.ReadFrame(&w.frame)
		if err != nil {
			if err != io.EOF {
				c.err = err
			}
			break
		}
		w.keep(c)
		if len(c.recs) >= w.part && parts != nil && reg != nil {
			next := <-parts
			next.follow(c)
			c.src, c.region, c.more, c.start = nil, reg, true, reg.Start()
			out <- c
			c = next
		}
	}
	src.Close()
	c.src, c.region = nil, reg
	if reg != nil {
		c.counted = w.tally()
		c.counted.sub(before)
	}
	return c
}

// readFanout is a live worker that reads its own source (an AF_PACKET
// socket of a fanout group, whose hash deals the frames) and sends the
// engine chunks of what it keeps.
func (w *worker) readFanout(out chan<- *chunk) error {
	free := newChunks(chunksPerWorker)
	var warnings []error
	var n uint
	var c *chunk
	send := func() {
		if c != nil && len(c.recs) > 0 {
			out <- c
			c = nil
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
		if c == nil {
			c = <-free
			c.first = w.frame.Timestamp
		}
		w.keep(c)
		if len(c.recs) >= liveBatch || w.frame.Timestamp.Sub(c.first) >= liveLatency {
			send()
		}
	}
}
