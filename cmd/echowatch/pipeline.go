package main

import (
	"errors"
	"sync"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// The pipeline runs sources → workers → flows and detection → outputs.
//
// One worker does everything on one goroutine: read, decode, flows,
// detection. With several, the workers decode in parallel and one stage,
// on the engine's goroutine, tracks flows and runs detection on what they
// keep. Detection's state crosses flows (reflectors per victim, prefixes,
// scanners, sketches), so it lives in one place; flows need to, too, for
// both directions of a flow to meet, and they are cheap there: only the
// packets detection wants reach the stage (about 1% of ordinary traffic).
//
// The frames are cut into chunks of consecutive frames, dealt to the workers
// in turn, and the stage takes the workers' results back in the same
// order. A capture file is cut into regions that each worker reads itself
// (capture.Splitter), so that a frame's bytes are read and decoded by the
// same core: dealing frames from a reader to other cores, by a hash of
// their addresses or otherwise, moves every frame between caches, which on
// a two-core machine costs as much as decoding it. Other inputs (pcapng,
// gzip, standard input, a libpcap interface) are read by a dealer that
// copies the frames into the chunks. With AF_PACKET, the kernel's fanout
// deals the frames by a symmetric hash of their flow, each worker reads
// its own socket, and the stage takes chunks as they come.
//
// Offline, detection sees what one worker would show it: the same packets
// in the same order, at the same packet times, with the same flow and
// fragment tables, so 1, 2 or N workers give byte-identical alerts.
// Detection's clock is the latest frame time read: each worker notes, in
// its chunk, the latest frame time as of every packet it keeps and wherever
// it enters a new second, and the stage adds the clock at the start of the
// chunk. Live, a dealer drops a chunk rather than wait for a worker that has
// fallen behind (counted as the worker's queue drops), and the kernel
// counts what it dropped.

// pipeline is the workers of one run of the sensor and how they are fed.
type pipeline struct {
	cfg     config
	eng     *detect.Engine
	srcs    []capture.Source
	workers []*worker

	// Several workers: the stage's tables, and the dealer, if any.
	flows  detect.FlowTable
	frags  *capture.Fragments
	dedup  *capture.Dedup // with --dedup
	dealer *dealer
	split  *capture.Splitter
	// redo decodes, on the engine's goroutine, the rare region that
	// guessed wrong where its first record starts.
	redo *worker

	// statsEvery is how often run calls emitStats on the engine's
	// goroutine: live, the stats period with --stats and at most a
	// second; at most a second with --metrics-listen (offline too);
	// otherwise never.
	statsEvery time.Duration
	// reload, if not nil, has configs read on SIGHUP for the engine.
	reload *reloader
}

// newPipeline makes cfg.Workers workers for srcs: a source per worker
// (AF_PACKET's fanout), or one source for all.
func newPipeline(cfg config, srcs []capture.Source, eng *detect.Engine) (*pipeline, error) {
	n := max(cfg.Workers, len(srcs))
	p := &pipeline{cfg: cfg, eng: eng, srcs: srcs}
	if cfg.Stats && cfg.Interface != "" {
		p.statsEvery = cfg.StatsInterval
	}
	// Live, the counters are looked at every second at least, so that a
	// blind spot is warned of as it appears (see blindSpots).
	if (cfg.MetricsListen != "" || cfg.Interface != "") && (p.statsEvery == 0 || p.statsEvery > metricsEvery) {
		p.statsEvery = metricsEvery
	}
	flows, err := detect.NewFlows(detect.FlowConfig{MaxFlows: cfg.MaxFlows, Ports: eng.FlowPorts()})
	if err != nil {
		return nil, err
	}
	for i := range n {
		w, err := newWorker(i, cfg, eng)
		if err != nil {
			return nil, err
		}
		if len(srcs) == n {
			w.src = srcs[i]
		}
		p.workers = append(p.workers, w)
	}
	if n == 1 {
		p.workers[0].flows = flows
		return p, nil
	}
	p.flows, p.frags = flows, capture.NewFragments()
	if p.redo, err = newWorker(-1, cfg, eng); err != nil {
		return nil, err
	}
	if cfg.Dedup > 0 {
		if p.dedup, err = capture.NewDedup(cfg.Dedup); err != nil {
			return nil, usagef("--dedup: %v", err)
		}
	}
	for _, w := range append(p.workers, p.redo) {
		w.dec.SkipFragments() // the stage's table sees them all, in order
		// So does its table of copies: a copy and its original may fall
		// in two workers' chunks (two regions of a file, one each side).
		w.dedup, w.sums = nil, p.dedup != nil
		if cfg.Evidence.Dir != "" {
			w.rawBytes = cfg.Evidence.Snaplen
		}
	}
	if len(srcs) == 1 {
		p.dealer = newDealer(n, cfg.Interface != "")
	}
	return p, nil
}

// run runs the pipeline until its sources end, or a stop closes them, and
// ends every open incident. It returns the capture files' errors, after
// which the reading went on (truncated, damaged or unreadable files), and
// the first failure.
func (p *pipeline) run(emitStats func()) (warnings []error, err error) {
	if len(p.workers) == 1 {
		w := p.workers[0]
		var idle, tick func()
		if p.cfg.Interface != "" {
			idle = idleClock(w, p.eng)
		}
		if p.statsEvery > 0 {
			tick = emitStats
			defer startStatsTicker(p.statsEvery, w)()
		}
		w.reload = p.reload
		warnings, err = w.runOne(p.eng, idle, tick)
		p.eng.Flush(w.last)
		return warnings, err
	}

	st := &stage{p: p, now: -1 << 63}
	var wg sync.WaitGroup
	if p.dealer == nil {
		// AF_PACKET: each worker reads its socket.
		out := make(chan *chunk, chunksPerWorker*len(p.workers))
		errs := make([]error, len(p.workers))
		for i, w := range p.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = w.readFanout(out)
			}()
		}
		go func() { wg.Wait(); close(out) }()
		st.asTheyCome(out, emitStats)
		st.flush()
		return nil, errors.Join(errs...)
	}

	d := p.dealer
	outs := make([]chan *chunk, len(p.workers))
	for i, w := range p.workers {
		outs[i] = make(chan *chunk, chunksPerWorker)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.decodeChunks(d.in[i], outs[i])
		}()
	}
	stop := make(chan struct{})
	src := p.srcs[0]
	if sp, ok := splitter(src); ok {
		if f, ok := src.(*capture.FilteredSource); ok {
			for _, w := range append(p.workers, p.redo) {
				w.filter = f.Filter()
			}
		}
		p.split = sp
		go d.split(sp, stop)
	} else {
		go d.stream(src, stop)
	}
	warnings, err = st.inOrder(d.tickets, outs, stop, emitStats)
	wg.Wait()
	st.flush()
	return warnings, err
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

// stage tracks flows and runs detection on what the workers keep, on the
// engine's goroutine.
type stage struct {
	p   *pipeline
	now int64 // detection's clock: the latest frame time so far, Unix ns

	quiet quietClock // live: moves the clock on while no frame comes
}

// take runs detection on a run: its packets, in order, each at the clock
// as of its frame.
func (st *stage) take(r *chunk) {
	p := st.p
	for i := range r.recs {
		rec := &r.recs[i]
		// The chunk's clock only grows: the engine's is the larger of it
		// and where it stood when the chunk began.
		st.now = max(st.now, rec.clock)
		p.eng.Tick(time.Unix(0, st.now).UTC())
		if rec.tick {
			continue
		}
		pkt := r.packet(rec)
		if pkt.Fragment {
			p.frags.Attribute(pkt)
		}
		if rec.hasSum && p.dedup.SeenSum(rec.sum, pkt.Timestamp) {
			continue
		}
		f, dir := p.flows.Update(pkt)
		p.eng.Packet(pkt, f, dir)
	}
	if r.last > st.now {
		st.now = r.last
	}
}

// check checks the region of r, a chunk of a split file, in order: it
// reads again a region that guessed wrong where its first record starts,
// and empties a chunk whose file ended before it.
func (st *stage) check(r *chunk) {
	sp, reg := st.p.split, r.region
	v, err := sp.Check(reg)
	switch v {
	case capture.Skip:
		r.reset()
	case capture.Reread:
		reg = sp.Reread(reg)
		r.reset()
		r.src = reg
		st.p.redo.decodeChunk(r)
		_, err = sp.Check(reg) // its start is known: accepted
	}
	r.err = err
}

// flush ends every open incident at the latest frame time.
func (st *stage) flush() {
	var last time.Time
	if st.now != -1<<63 {
		last = time.Unix(0, st.now).UTC()
	}
	st.p.eng.Flush(last)
}

// inOrder takes the workers' chunks in the order the dealer dealt them. A
// capture file's error is a warning; any other error ends the pipeline's
// work: stop tells the dealer, and the chunks still in flight are drained
// unread.
func (st *stage) inOrder(tickets <-chan int, outs []chan *chunk, stop chan struct{}, emitStats func()) (warnings []error, err error) {
	tick, quiet, stopTickers := st.tickers()
	defer stopTickers()
	for {
		var w int
		var ok bool
		select {
		case w, ok = <-tickets:
		case now := <-quiet:
			st.idle(now)
			continue
		case <-tick:
			emitStats()
			continue
		case <-st.p.reload.due():
			st.p.reload.apply()
			continue
		}
		if !ok {
			return warnings, err
		}
		r := <-outs[w]
		if r.region != nil {
			st.check(r)
		}
		if err == nil {
			st.take(r)
			var ws []error
			ws, err = inputErrors(r.err)
			warnings = append(warnings, ws...)
			if err != nil {
				close(stop)
			}
		}
		r.reset()
		r.home <- r
	}
}

// asTheyCome takes the workers' chunks as they come (AF_PACKET).
func (st *stage) asTheyCome(out <-chan *chunk, emitStats func()) {
	tick, quiet, stopTickers := st.tickers()
	defer stopTickers()
	for {
		select {
		case now := <-quiet:
			st.idle(now)
		case r, ok := <-out:
			if !ok {
				return
			}
			st.take(r)
			r.reset()
			r.home <- r
		case <-tick:
			emitStats()
		case <-st.p.reload.due():
			st.p.reload.apply()
		}
	}
}

// tickers returns the ticks of the stats period (see statsEvery) and,
// live, of the checks for a quiet capture.
func (st *stage) tickers() (stats, quiet <-chan time.Time, stop func()) {
	var stops []func()
	if st.p.cfg.Interface != "" {
		q := time.NewTicker(250 * time.Millisecond)
		quiet, stops = q.C, append(stops, q.Stop)
	}
	if st.p.statsEvery > 0 {
		t := time.NewTicker(st.p.statsEvery)
		stats, stops = t.C, append(stops, t.Stop)
	}
	return stats, quiet, func() {
		for _, s := range stops {
			s()
		}
	}
}

// idle moves detection's clock on by wall time while no frame comes (see
// quietClock).
func (st *stage) idle(now time.Time) {
	var last time.Time
	if st.now != -1<<63 {
		last = time.Unix(0, st.now)
	}
	if at, ok := st.quiet.at(last, now); ok {
		st.p.eng.Tick(at)
	}
}

// stats collects the counters of the whole pipeline. It runs on the
// engine's goroutine.
func (p *pipeline) stats() *statsEvent {
	ev := &statsEvent{Host: p.cfg.SensorName, Detect: p.eng.Stats()}
	for i, w := range p.workers {
		ws := w.stats()
		ev.add(ws)
		rep := workerReport{Worker: i, Frames: ws.decode.Frames, Decoded: ws.decode.Decoded}
		if p.dealer != nil {
			rep.QueueDrops = p.dealer.queueDrops[i].Load()
			ev.Capture.QueueDrops += rep.QueueDrops
		}
		if len(p.srcs) > 1 { // a socket of its own
			if s, ok := sourceStats(w.src); ok {
				rep.KernelPackets, rep.KernelDrops, rep.KernelFreezes = s.Received, s.Dropped, s.Freezes
			}
		}
		ev.Workers = append(ev.Workers, rep)
		ev.Flow.Untracked += ws.skipped
		ev.Capture.FilterRejected += ws.rejected
	}
	if p.redo != nil {
		p.redo.publish() // the engine's goroutine is its own
		ws := p.redo.stats()
		ev.add(ws)
		ev.Flow.Untracked += ws.skipped
		ev.Capture.FilterRejected += ws.rejected
	}
	if p.flows != nil {
		ev.Flow.Add(p.flows.Stats())
		ev.Decoder.FragmentsMatched, ev.Decoder.FragmentsEvicted = p.frags.Stats()
	}
	if p.dedup != nil {
		ev.Decoder.DedupDropped, ev.Decoder.DedupEvicted = p.dedup.Stats()
	}
	for _, s := range p.srcs {
		if st, ok := sourceStats(s); ok {
			ev.addSource(st)
		}
		if fs, ok := s.(*capture.FilteredSource); ok {
			ev.Capture.FilterRejected += fs.Rejected()
		}
	}
	return ev
}

// sourceStats returns a live source's kernel counters.
func sourceStats(s capture.Source) (capture.SourceStats, bool) {
	ss, ok := s.(capture.StatsSource)
	if !ok {
		return capture.SourceStats{}, false
	}
	st, err := ss.Stats()
	return st, err == nil
}
