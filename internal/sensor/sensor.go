// Package sensor is echowatch's run loop: sources → workers → flows and
// detection → alerts. It moves frames from capture.Sources through
// decoders to a detect.Engine, which writes the alerts; what reads the
// sources and where the alerts go are the caller's.
//
// One worker does everything on one goroutine: read, decode, flows,
// detection. With several, the workers decode in parallel and one stage,
// on the engine's goroutine, tracks flows and runs detection on what they
// keep. Detection's state crosses flows (reflectors per victim, prefixes,
// scanners, sketches), so it lives in one place; flows need to, too, for
// both directions of a flow to meet, and they are cheap there: only the
// packets detection wants reach the stage (about 1% of ordinary traffic).
//
// The frames are cut into chunks of consecutive frames, dealt to the
// workers in turn, and the stage takes the workers' results back in the
// same order. A capture file is cut into regions that each worker reads
// itself (capture.Splitter), so that a frame's bytes are read and decoded
// by the same core: dealing frames from a reader to other cores, by a hash
// of their addresses or otherwise, moves every frame between caches, which
// on a two-core machine costs as much as decoding it. A worker sends what
// it keeps of a region in parts as it goes, so that the stage reads the
// records while they are still in the caches. Other inputs (pcapng,
// gzip, standard input, a libpcap interface) are read by a dealer that
// copies the frames into the chunks. With AF_PACKET (several sources), the
// kernel's fanout deals the frames by a symmetric hash of their flow, each
// worker reads its own socket, and the stage takes chunks as they come.
//
// Offline, detection sees what one worker would show it: the same packets
// in the same order, at the same packet times, with the same flow and
// fragment tables, so 1, 2 or N workers give byte-identical alerts.
// Detection's clock (detect.Clock) is the frames' time, never running
// backward; the engine puts each frame on it before flows and detection
// see the frame's packet. Its rules look at whole seconds, so each worker
// notes in its chunk only the first frame of each second, the largest
// time of each, and the time of every packet it keeps, and the stage gets
// from the clock what every frame would give. Fragments and dedup keep the
// frames' own times. Live, a dealer drops a chunk rather than wait for a
// worker that has fallen behind (counted as the worker's queue drops), and
// the kernel counts what it dropped.
//
// The engine is touched on one goroutine only, the engine's: the lone
// worker's, or the stage's. The hooks (Ticker, Reloader) run there too,
// between two packets, so they may read or change the engine, and so does
// the Observer, which is how a report follows the run's incidents.
package sensor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// Config is how a Sensor runs.
type Config struct {
	// Workers is how many goroutines decode (at least 1). With several
	// sources, one worker reads each, and Workers is their number.
	Workers int
	// Live says the sources are live captures: while no frame comes,
	// detection's clock moves on by wall time, and a worker that falls
	// behind loses chunks rather than holds up the capture.
	Live bool
	// Decoder configures every worker's decoder.
	Decoder capture.DecoderConfig
	// Dedup, above 0, drops a packet that is a copy of one seen within it
	// (capture.Dedup), before flows and detection.
	Dedup time.Duration
	// MaxFlows bounds the flow table; 0 is detect's default.
	MaxFlows int
	// EvidenceSnaplen is how many bytes of each kept packet's frame the
	// workers carry to detection when several decode: set it when the
	// engine keeps evidence (detect.Engine.KeepEvidence); 0 carries none.
	EvidenceSnaplen int

	// Ticker, if not nil, is called every TickEvery.
	Ticker    Ticker
	TickEvery time.Duration
	// Reloader, if not nil, changes the engine when it is due.
	Reloader Reloader

	// Observer, if not nil, follows the run's incidents: New has the
	// engine give it every alert and report the incidents' rates to it.
	Observer Observer
	// Draining, if not nil, is called once the input is over, on the
	// engine's goroutine, just before the final Flush writes the end of
	// every open incident: no capture is left to fall behind, so the
	// outputs may wait for room rather than drop that burst.
	Draining func()

	// fullDecode, for tests, has every frame decoded in full, without
	// the decoder's pre-filter.
	fullDecode bool
	// partRecords, for tests, is how many records fill a part of a
	// region (0: partRecords).
	partRecords int
}

// An Observer follows the incidents of a run, for a report: it is given
// every alert the engine writes (the *Alert is borrowed for the call) and,
// once per second of packet time, the rates of the open incidents. Both
// are called on the engine's goroutine.
type Observer interface {
	detect.AlertWriter
	detect.RateObserver
}

// A Ticker is told, every Config.TickEvery, that the period has passed. It
// runs on the engine's goroutine between two packets: there, and after Run
// has returned, the engine's counters and Sensor.Stats may be read.
type Ticker interface {
	Tick()
}

// A Reloader changes the engine between packets (a configuration read on
// SIGHUP). Due is signalled, from any goroutine, when there is something
// to apply; Apply, called on the engine's goroutine between two packets,
// applies it. Apply may be called when nothing is due: it then returns at
// once.
type Reloader interface {
	Due() <-chan struct{}
	Apply()
}

// Sensor runs the frames of its sources through decoders and flows to a
// detection engine. New makes it, Run runs it once; Stats and Warnings say
// how it went.
type Sensor struct {
	cfg     Config
	eng     *detect.Engine
	srcs    []capture.Source
	workers []*worker

	// Several workers: the stage's tables, and the dealer, if any.
	flows  detect.FlowTable
	frags  *capture.Fragments
	dedup  *capture.Dedup // with Config.Dedup
	dealer *dealer
	split  *capture.Splitter
	// redo decodes, on the engine's goroutine, the rare region that
	// guessed wrong where its first record starts; unread is what the
	// workers counted of such regions, and of those skipped, the first
	// time, which Stats takes out.
	redo   *worker
	unread workerStats

	ran      bool
	warnings []error
}

// New returns a Sensor that reads srcs (one, or one per worker) into eng,
// which should write to cfg.Alerts when cfg has an Observer. It checks
// cfg, has eng report its incidents' rates to cfg.Observer, does no I/O
// and starts no goroutine.
func New(cfg Config, srcs []capture.Source, eng *detect.Engine) (*Sensor, error) {
	n := cfg.Workers
	switch {
	case eng == nil:
		return nil, errors.New("sensor: no engine")
	case cfg.Workers < 1:
		return nil, fmt.Errorf("sensor: %d workers (want at least 1)", cfg.Workers)
	case len(srcs) == 0:
		return nil, errors.New("sensor: no source")
	case len(srcs) > 1 && len(srcs) != n:
		return nil, fmt.Errorf("sensor: %d sources for %d workers (want one, or one per worker)", len(srcs), cfg.Workers)
	case cfg.Ticker != nil && cfg.TickEvery <= 0:
		return nil, fmt.Errorf("sensor: a ticker every %v", cfg.TickEvery)
	case cfg.Dedup < 0 || cfg.EvidenceSnaplen < 0 || cfg.MaxFlows < 0:
		return nil, fmt.Errorf("sensor: dedup %v, evidence snaplen %d, max flows %d: none may be negative",
			cfg.Dedup, cfg.EvidenceSnaplen, cfg.MaxFlows)
	}
	s := &Sensor{cfg: cfg, eng: eng, srcs: srcs}
	if cfg.Observer != nil {
		eng.ObserveAlerts(cfg.Observer)
		eng.ObserveRates(cfg.Observer)
	}
	flows, err := detect.NewFlows(detect.FlowConfig{MaxFlows: cfg.MaxFlows, Ports: eng.FlowPorts()})
	if err != nil {
		return nil, fmt.Errorf("sensor: %w", err)
	}
	for i := range n {
		w, err := newWorker(i, cfg, eng)
		if err != nil {
			return nil, err
		}
		if len(srcs) == n { // one each, or one worker does all
			w.src = srcs[i]
		}
		s.workers = append(s.workers, w)
	}
	if n == 1 {
		s.workers[0].flows = flows
		return s, nil
	}
	s.flows, s.frags = flows, capture.NewFragments()
	if s.redo, err = newWorker(-1, cfg, eng); err != nil {
		return nil, err
	}
	if cfg.Dedup > 0 {
		if s.dedup, err = capture.NewDedup(cfg.Dedup); err != nil {
			return nil, fmt.Errorf("sensor: %w", err)
		}
	}
	for _, w := range append(s.workers, s.redo) {
		w.dec.SkipFragments() // the stage's table sees them all, in order
		// So does its table of copies: a copy and its original may fall
		// in two workers' chunks (two regions of a file, one each side).
		w.dedup, w.sums = nil, s.dedup != nil
		w.rawBytes = cfg.EvidenceSnaplen
	}
	if len(srcs) == 1 {
		s.dealer = newDealer(n, cfg.Live)
	}
	return s, nil
}

// Run reads the sources until they end, or until ctx is done, when it
// closes them to stop the reads (so they must allow Close from another
// goroutine, and twice); then it ends every open incident (the engine's
// Flush). It returns the first failure; a stop by ctx is none, and neither
// are the capture files' errors after which the reading went on (see
// Warnings). Run runs once: a second call fails.
func (s *Sensor) Run(ctx context.Context) error {
	if s.ran {
		return errors.New("sensor: Run called twice")
	}
	s.ran = true
	stop := context.AfterFunc(ctx, func() {
		for _, src := range s.srcs {
			src.Close()
		}
	})
	warnings, err := s.run()
	stop()
	s.warnings = warnings
	if ctx.Err() != nil {
		return nil // reads interrupted by the stop
	}
	return err
}

// Warnings returns the capture files' errors of the run, after which the
// reading went on: a file cut short, a damaged stretch skipped, a file
// that could not be read. It is valid once Run has returned.
func (s *Sensor) Warnings() []error { return s.warnings }

// flush ends every open incident at detection's clock, once the input is
// over; it runs on the engine's goroutine.
func (s *Sensor) flush() {
	if s.cfg.Draining != nil {
		s.cfg.Draining()
	}
	s.eng.Flush(s.eng.Now())
}

func (s *Sensor) run() (warnings []error, err error) {
	if len(s.workers) == 1 {
		w := s.workers[0]
		defer s.startHooks(w)()
		warnings, err = w.runOne(s.eng, s.cfg.Live)
		s.flush()
		return warnings, err
	}

	st := &stage{s: s}
	var wg sync.WaitGroup
	if s.dealer == nil {
		// AF_PACKET: each worker reads its socket.
		out := make(chan *chunk, chunksPerWorker*len(s.workers))
		errs := make([]error, len(s.workers))
		for i, w := range s.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = w.readFanout(out)
			}()
		}
		go func() { wg.Wait(); close(out) }()
		st.asTheyCome(out)
		s.flush()
		return nil, errors.Join(errs...)
	}

	d := s.dealer
	outs := make([]chan *chunk, len(s.workers))
	for i, w := range s.workers {
		outs[i] = make(chan *chunk, chunksPerWorker)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.decodeChunks(d.in[i], outs[i])
		}()
	}
	stop := make(chan struct{})
	src := s.srcs[0]
	if sp, ok := splitter(src); ok {
		if f, ok := src.(*capture.FilteredSource); ok {
			for _, w := range append(s.workers, s.redo) {
				w.filter = f.Filter()
			}
		}
		s.split = sp
		go d.split(sp, stop)
	} else {
		go d.stream(src, stop)
	}
	warnings, err = st.inOrder(d.tickets, outs, stop)
	wg.Wait()
	s.flush()
	return warnings, err
}

// startHooks has the lone worker w run the hooks when they are due: a
// goroutine marks them, and w, which owns the engine, looks at the mark
// once per frame. It returns what stops the goroutine.
func (s *Sensor) startHooks(w *worker) (stop func()) {
	w.ticker, w.reloader = s.cfg.Ticker, s.cfg.Reloader
	var tick <-chan time.Time
	var reload <-chan struct{}
	stops := []func(){}
	if w.ticker != nil {
		t := time.NewTicker(s.cfg.TickEvery)
		tick, stops = t.C, append(stops, t.Stop)
	}
	if w.reloader != nil {
		reload = w.reloader.Due()
	}
	if tick == nil && reload == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-tick:
				w.due.Or(tickDue)
			case <-reload:
				w.due.Or(reloadDue)
			case <-done:
				return
			}
		}
	}()
	return func() {
		for _, s := range stops {
			s()
		}
		close(done)
	}
}

// splitter returns the Splitter of a capture file source, when it can be
// split.
func splitter(src capture.Source) (*capture.Splitter, bool) {
	if f, ok := src.(*capture.FilteredSource); ok {
		src = f.Unwrap()
	}
	fs, ok := src.(*capture.FileSource)
	if !ok {
		return nil, false
	}
	return fs.Split()
}
