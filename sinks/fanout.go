package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/echowatch/echowatch/detect"
)

// Fanout hands each event to every output, and swaps its outputs for
// others when the configuration is reloaded. Writing never blocks: each
// output is a Queue of its own, and what a full queue drops is counted.
//
// Write, WriteAlert and Swap are called by one goroutine at a time (the
// writer's). Prepare, Discard, Reopen, Stats and Lost may be called from
// any goroutine, at any time: the outputs a Swap puts in place are
// published with one atomic store, so the writer pays one atomic load per
// event for them. Between a Prepare and the Swap or Discard of its Plan,
// no other Plan may be swapped in: whoever reloads sees to it. Close is
// called once the writer is done; it flushes every output, waits for those
// a reload removed, and is safe to call twice.
type Fanout struct {
	cur    atomic.Pointer[outputSet]
	stdout io.Writer // for a stdout output a reload adds
	logger *slog.Logger

	mu     sync.Mutex
	closed bool
	plans  map[*Plan]struct{} // prepared, neither swapped in nor discarded
	// Outputs removed by reloads close in the background (retiring);
	// once closed, only what they lost and their error are kept.
	retiring    sync.WaitGroup
	closing     map[*Queue]struct{} // removed, still closing
	retiredLost uint64              // events lost by those closed
	retiredErrs []error             // their close errors

	closeOnce sync.Once
	closeErr  error

	// waits is the outputs' shared budget of waiting for room (see
	// Options.WaitBudget), made for the first output that needs it;
	// reloads keep it. Guarded by mu.
	waits *WaitBudget
}

var _ detect.AlertWriter = (*Fanout)(nil)

// outputSet is the outputs in use, in the order they were given. It is not
// modified once published.
type outputSet struct {
	queues []*Queue
	keys   []outputKey // what queues[i] was made from
	files  []*Queue    // reopened by Reopen
}

// Plan is a set of outputs ready to replace a Fanout's: those kept from
// it, and those opened for it (fresh), already started.
type Plan struct {
	set   *outputSet
	fresh []*Queue
}

// OutputStats are one output's counters, for the stats event and metrics.
type OutputStats struct {
	Name string `json:"name"`
	QueueStats
}

// OpenFanout parses the outputs' URLs (see ParseOutput), then opens and
// starts them. It fails when an output is misconfigured in a way only the
// destination can tell (a Kafka topic that does not exist, a file that
// cannot be opened); one that cannot be reached yet is logged as down and
// tried again in the background. A stdout output writes to stdout; logger
// (nil: none) gets the outputs' state changes.
func OpenFanout(ctx context.Context, urls []string, o Options, stdout io.Writer, logger *slog.Logger) (*Fanout, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Fanout{stdout: stdout, logger: logger}
	set, _, err := f.build(ctx, urls, o, &outputSet{})
	if err != nil {
		return nil, err
	}
	f.cur.Store(set)
	return f, nil
}

// budget returns the outputs' shared budget of waiting for room, of per a
// second, made on first use.
func (f *Fanout) budget(per time.Duration) *WaitBudget {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waits == nil {
		f.waits = NewWaitBudget(per)
	}
	return f.waits
}

// Drain lifts the shared budget of waiting for room (Options.WaitBudget)
// for the next within: a live sensor calls it when its capture is over,
// so that the ends of its incidents wait for room in the queues rather
// than be dropped: until then, a writer waits as long as it takes. It may
// be called from any goroutine.
func (f *Fanout) Drain(within time.Duration) {
	f.mu.Lock()
	b := f.waits
	f.mu.Unlock()
	if b != nil {
		b.Drain(time.Now().Add(within))
	}
}

// build returns the set of outputs for urls and opts: the queues of base
// made from the same URL and options, and new ones, started, for the
// others (fresh). On an error it closes those it opened.
func (f *Fanout) build(ctx context.Context, urls []string, opts Options, base *outputSet) (set *outputSet, fresh []*Queue, err error) {
	set = &outputSet{}
	taken := make([]bool, len(base.queues))
	qcfg := QueueConfig{Size: opts.QueueSize, FlushTimeout: opts.FlushTimeout, Wait: opts.Wait,
		Logger: f.logger}
	if opts.WaitBudget > 0 {
		qcfg.Budget = f.budget(opts.WaitBudget)
	}
	for _, raw := range urls {
		out, err := ParseOutput(raw, opts, f.stdout) // reads key files, connects to nothing
		if err != nil {
			closeQueues(fresh)
			return nil, nil, err
		}
		q := base.take(taken, out.key)
		if q == nil {
			q = NewQueue(out.Name, out.Dialer, qcfg)
			fresh = append(fresh, q)
			if err := q.Start(ctx); err != nil {
				closeQueues(fresh)
				return nil, nil, fmt.Errorf("output %s: %w", out.Name, err)
			}
		}
		set.queues = append(set.queues, q)
		set.keys = append(set.keys, out.key)
		if _, isFile := out.Dialer.(*File); isFile {
			set.files = append(set.files, q)
		}
	}
	return set, fresh, nil
}

// take returns the first queue of s made from key that is not taken yet,
// if any, and marks it taken.
func (s *outputSet) take(taken []bool, key outputKey) *Queue {
	for i, k := range s.keys {
		if !taken[i] && k == key {
			taken[i] = true
			return s.queues[i]
		}
	}
	return nil
}

// Prepare opens what a reload to urls and opts adds to the outputs in
// use, without touching those: Swap puts the plan in place, Discard drops
// it. An output kept is one made from the same URL and options (two at
// one URL are two outputs). A URL that does not parse, or an output that
// fails its start-up check, fails the whole plan.
func (f *Fanout) Prepare(ctx context.Context, urls []string, opts Options) (*Plan, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return nil, errors.New("outputs: closed")
	}
	set, fresh, err := f.build(ctx, urls, opts, f.cur.Load())
	if err != nil {
		return nil, err
	}
	p := &Plan{set: set, fresh: fresh}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		closeQueues(fresh)
		return nil, errors.New("outputs: closed")
	}
	if f.plans == nil {
		f.plans = map[*Plan]struct{}{}
	}
	f.plans[p] = struct{}{}
	return p, nil
}

// Swap makes p's outputs the ones written to, tells changed the names of
// the outputs it adds and removes, then closes those removed in the
// background, each flushing for at most its flush timeout; their losses
// are logged, and counted by Lost and Close. A plan discarded, or one
// swapped after Close, changes nothing.
func (f *Fanout) Swap(p *Plan, changed func(added, removed []string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.plans[p]; !ok || f.closed {
		return // discarded, or after Close: nothing is written any more
	}
	delete(f.plans, p)
	old := f.cur.Swap(p.set)
	var added, removed []string
	var gone []*Queue
	for _, q := range p.fresh {
		added = append(added, q.Name())
	}
	for _, q := range old.queues {
		if !slices.Contains(p.set.queues, q) {
			removed = append(removed, q.Name())
			gone = append(gone, q)
		}
	}
	changed(added, removed)
	if f.closing == nil {
		f.closing = map[*Queue]struct{}{}
	}
	for _, q := range gone {
		f.closing[q] = struct{}{}
		f.retiring.Go(func() {
			err := q.Close()
			if err != nil {
				f.logLoss(q)
			} else {
				f.logger.Info("output closed", "output", q.Name(), "delivered", q.Stats().Delivered)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			delete(f.closing, q)
			f.retiredLost += q.Stats().Lost()
			if err != nil {
				f.retiredErrs = append(f.retiredErrs, err)
			}
		})
	}
}

// Discard closes, in the background, the outputs opened for p, which was
// never swapped in; they were given nothing.
func (f *Fanout) Discard(p *Plan) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.plans[p]; ok {
		delete(f.plans, p)
		// Under the lock, so that Close, which marks the outputs closed
		// under it too, waits for these.
		f.retiring.Go(func() { closeQueues(p.fresh) })
	}
}

// closeQueues closes qs at once and waits for them.
func closeQueues(qs []*Queue) []error {
	errs := make([]error, len(qs))
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Go(func() { errs[i] = q.Close() })
	}
	wg.Wait()
	return errs
}

// WriteAlert implements detect.AlertWriter.
func (f *Fanout) WriteAlert(a *detect.Alert) { f.Write(a) }

// Write renders ev once and queues it on every output. ev is not kept.
func (f *Fanout) Write(ev Event) {
	set := f.cur.Load()
	if len(set.queues) == 0 {
		return
	}
	r := NewRecord(ev)
	for _, q := range set.queues {
		q.Enqueue(r) // a full queue counts the drop
	}
}

// Reopen makes file outputs reopen their paths, after logrotate moved
// them.
func (f *Fanout) Reopen() {
	for _, q := range f.cur.Load().files {
		q.Redial()
	}
}

// Stats returns the counters of every output in use.
func (f *Fanout) Stats() []OutputStats {
	set := f.cur.Load()
	st := make([]OutputStats, len(set.queues))
	for i, q := range set.queues {
		st[i] = OutputStats{Name: q.Name(), QueueStats: q.Stats()}
	}
	return st
}

// Lost returns the events that outputs, including those a reload removed,
// dropped, had refused or could not deliver.
func (f *Fanout) Lost() uint64 {
	var n uint64
	for _, q := range f.cur.Load().queues {
		n += q.Stats().Lost()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for q := range f.closing {
		n += q.Stats().Lost()
	}
	return n + f.retiredLost
}

// Close flushes every output at once, each for at most its flush timeout,
// logs the counters of those that lost events and returns an error that
// says what was lost, if anything was, by the outputs in use and by those
// a reload removed (whose close it waits for). Plans neither swapped in
// nor discarded are closed unused. It is safe to call twice.
func (f *Fanout) Close() error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		var unused []*Queue
		for p := range f.plans {
			unused = append(unused, p.fresh...)
		}
		f.plans = nil
		f.mu.Unlock()
		closeQueues(unused) // given nothing: they close at once

		queues := f.cur.Load().queues
		errs := closeQueues(queues)
		for i, q := range queues {
			if errs[i] != nil {
				f.logLoss(q)
			}
		}
		f.retiring.Wait()
		f.mu.Lock()
		errs = append(errs, f.retiredErrs...)
		f.mu.Unlock()
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

// logLoss logs the counters of q, which lost events.
func (f *Fanout) logLoss(q *Queue) {
	s := q.Stats()
	f.logger.Warn("output lost events", "output", q.Name(), "produced", s.Produced, "delivered", s.Delivered,
		"dropped", s.Dropped, "rejected", s.Rejected, "undelivered", s.Undelivered)
}
