package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// QueueConfig sets how an output buffers and retries.
type QueueConfig struct {
	// Size bounds the events held: waiting, and sent but not yet known
	// delivered; it is the output's memory. An event that finds the queue
	// full is dropped and counted (but see Wait). It bounds a burst, or
	// an outage, not the rate: a destination that confirms what it is
	// sent as fast as it comes keeps even a small queue from filling, as
	// a Settler confirms at once when the queue is half full. Default
	// 10000.
	Size int
	// Wait, if positive, makes Enqueue wait for room in a full queue while
	// the destination is up and makes progress, rather than drop at once:
	// backpressure, for a run over capture files, which may go as slowly
	// as its outputs. An output that is down, or that made no room for
	// Wait, drops without waiting until it makes room again, so a dead or
	// stuck destination does not stall the run. Zero never waits; a live
	// sensor waits briefly, within a Budget.
	Wait time.Duration
	// Budget, if not nil, bounds the time Enqueue spends waiting for room
	// (see Wait) within any second, for this queue and every other that
	// shares it: past it, a full queue drops at once until the second is
	// over. A live sensor waits briefly, so that a burst larger than the
	// queue still reaches a destination that keeps up, yet its outputs
	// together never hold the capture back for longer than that.
	Budget *WaitBudget
	// MaxBatch bounds the events handed to a connection at once. Default
	// 5000.
	MaxBatch int
	// FlushTimeout bounds how long Close waits for the queue to drain.
	// Default 5s.
	FlushTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between two connection
	// attempts; it doubles after each failure. Defaults 100ms and 10s.
	BackoffMin, BackoffMax time.Duration
	// Logger gets the output's state changes (down, up again). Default:
	// discard.
	Logger *slog.Logger
}

func (c *QueueConfig) withDefaults() QueueConfig {
	d := *c
	if d.Size <= 0 {
		d.Size = 10000
	}
	if d.MaxBatch <= 0 {
		d.MaxBatch = 5000
		if d.Wait > 0 {
			// Smaller batches settle more often: a writer waiting for
			// room sees a slow destination make progress.
			d.MaxBatch = 256
		}
	}
	if d.FlushTimeout <= 0 {
		d.FlushTimeout = 5 * time.Second
	}
	if d.BackoffMin <= 0 {
		d.BackoffMin = 100 * time.Millisecond
	}
	if d.BackoffMax < d.BackoffMin {
		d.BackoffMax = max(10*time.Second, d.BackoffMin)
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return d
}

// QueueStats are an output's counters. Once the queue is closed,
// Produced = Delivered + Dropped + Rejected + Undelivered.
type QueueStats struct {
	Produced    uint64 `json:"produced"`    // events written to the output
	Delivered   uint64 `json:"delivered"`   // known to have reached the destination
	Dropped     uint64 `json:"dropped"`     // refused because the queue was full
	Rejected    uint64 `json:"rejected"`    // refused for good by the destination
	Failed      uint64 `json:"failed"`      // sends that failed, to be sent again
	Undelivered uint64 `json:"undelivered"` // still held when Close gave up
	Queued      int    `json:"queued"`      // held now: waiting or unconfirmed
	Up          bool   `json:"up"`          // connected, or not yet failed
}

// Lost is how many events the output will never deliver.
func (s QueueStats) Lost() uint64 { return s.Dropped + s.Rejected + s.Undelivered }

// Queue is one output: a bounded queue in front of a destination, with a
// goroutine that delivers what is queued, in order, and reconnects with
// backoff when the destination fails. Delivery is at least once within
// the bound: what a broken connection had not settled is sent again on the
// next one.
//
// Write and Enqueue never block (unless QueueConfig.Wait says so) and may
// be called from any goroutine; Close may be called once the writers are
// done, and more than once.
type Queue struct {
	name string
	dial Dialer
	cfg  QueueConfig
	log  *slog.Logger

	wake    chan struct{} // a token when there is something to do
	room    chan struct{} // a token when room was made, or waiting is over
	done    chan struct{} // closed when the delivery goroutine ends
	abort   context.Context
	cancel  context.CancelFunc
	started atomic.Bool

	mu       sync.Mutex
	pending  ring // waiting to be sent
	inflight int  // given to the connection, not settled
	closing  bool
	redial   bool
	stalled  bool // a wait for room ran out: no more waiting until room is made
	produced uint64
	dropped  uint64

	delivered, rejected, failed atomic.Uint64
	undelivered                 atomic.Uint64
	down                        atomic.Bool

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool // Close is over: what is left is undelivered
}

// NewQueue returns an output named name (for logs and errors) delivering
// to d. It does no I/O and starts nothing: see Start.
func NewQueue(name string, d Dialer, cfg QueueConfig) *Queue {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Queue{
		name: name, dial: d, cfg: cfg,
		log:  cfg.Logger.With("output", name),
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{}),
		abort: ctx, cancel: cancel,
		pending: newRing(cfg.Size),
	}
}

// Name returns the output's name.
func (q *Queue) Name() string { return q.name }

// Start checks the destination's configuration when the Dialer can (see
// Checker) and starts delivering. A destination that cannot be reached
// yet is not an error: it is logged as down and retried.
func (q *Queue) Start(ctx context.Context) error {
	if c, ok := q.dial.(Checker); ok {
		if err := c.Check(ctx); err != nil {
			if !errors.Is(err, ErrUnavailable) {
				return err
			}
			q.setDown(err)
		}
	}
	if q.started.CompareAndSwap(false, true) {
		go q.run()
	}
	return nil
}

// Write renders ev and queues it; see Enqueue.
func (q *Queue) Write(ev Event) error { return q.Enqueue(NewRecord(ev)) }

// Enqueue queues r, without blocking unless QueueConfig.Wait says so. It
// returns ErrQueueFull when the queue is full (r is dropped and counted)
// and ErrClosed after Close.
func (q *Queue) Enqueue(r *Record) error {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return ErrClosed
	}
	q.produced++
	// The wait runs out after Wait without progress: every settlement
	// that made room starts it again. It runs out sooner when the budget
	// of the second does, which is no stall.
	var quiet *time.Timer
	for q.pending.len()+q.inflight >= q.cfg.Size {
		wait := q.mayWait(time.Now())
		if wait <= 0 || q.stalled || q.closing || q.down.Load() {
			q.dropped++
			q.mu.Unlock()
			if quiet != nil {
				quiet.Stop()
				q.madeRoom() // another waiter looks again, and drops too
			}
			return ErrQueueFull
		}
		if quiet == nil {
			quiet = time.NewTimer(wait)
		} else {
			quiet.Reset(wait)
		}
		q.mu.Unlock()
		began := time.Now()
		timedOut := false
		select {
		case <-q.room:
		case <-quiet.C:
			timedOut = true
		}
		q.cfg.Budget.spend(time.Since(began))
		q.mu.Lock()
		if timedOut && wait == q.cfg.Wait {
			// Room may have come with the timer: then it is no stall.
			q.stalled = q.pending.len()+q.inflight >= q.cfg.Size
		}
	}
	if quiet != nil {
		quiet.Stop()
		if q.closing { // Close came while it waited: it takes no more
			q.dropped++
			q.mu.Unlock()
			q.madeRoom()
			return ErrClosed
		}
		if q.pending.len()+q.inflight+1 < q.cfg.Size {
			q.madeRoom() // room for another writer that waits
		}
	}
	q.pending.pushBack(r)
	q.mu.Unlock()
	q.poke()
	return nil
}

// mayWait returns how long a writer may wait for room now: Wait, or what
// is left of the budget in this second if less (or of a drain).
func (q *Queue) mayWait(now time.Time) time.Duration {
	if q.cfg.Wait <= 0 || q.cfg.Budget == nil {
		return q.cfg.Wait
	}
	return q.cfg.Budget.allow(now, q.cfg.Wait)
}

// WaitBudget is the time that writers may spend waiting for room in the
// queues that share it, within any second of wall time. Its methods may
// be called from any goroutine; a nil *WaitBudget bounds nothing.
type WaitBudget struct {
	mu     sync.Mutex
	per    time.Duration
	from   time.Time // the second being counted began
	waited time.Duration
	until  time.Time // after Drain: writers may wait until then, per aside
}

// NewWaitBudget returns a budget of per in every second.
func NewWaitBudget(per time.Duration) *WaitBudget { return &WaitBudget{per: per} }

// allow returns how long a writer may wait now, wait at most: what is
// left of the budget in the second of now, or, once drained, until the
// deadline, wait aside.
func (b *WaitBudget) allow(now time.Time, wait time.Duration) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.until.IsZero() {
		return max(b.until.Sub(now), 0)
	}
	if now.Sub(b.from) >= time.Second {
		b.from, b.waited = now, 0
	}
	return min(wait, b.per-b.waited)
}

// Drain lets writers wait for room until the deadline, as long as each
// needs, whatever they waited before: the capture the budget protected
// is over.
func (b *WaitBudget) Drain(deadline time.Time) {
	b.mu.Lock()
	b.until = deadline
	b.mu.Unlock()
}

// spend counts d waited.
func (b *WaitBudget) spend(d time.Duration) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.waited += d
	b.mu.Unlock()
}

// Redial closes the current connection once what it is sending is done
// and connects again: a File reopens its path (after logrotate).
func (q *Queue) Redial() {
	q.mu.Lock()
	q.redial = true
	q.mu.Unlock()
	q.poke()
}

// Stats returns the output's counters.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	s := QueueStats{Produced: q.produced, Dropped: q.dropped, Queued: q.pending.len() + q.inflight}
	q.mu.Unlock()
	s.Delivered = q.delivered.Load()
	s.Rejected = q.rejected.Load()
	s.Failed = q.failed.Load()
	s.Undelivered = q.undelivered.Load()
	s.Up = !q.down.Load()
	if q.closed.Load() {
		s.Queued = 0
	}
	return s
}

// Close stops taking events and waits up to the flush timeout for what is
// queued to be delivered. What is left is counted as undelivered, and
// Close then returns an error that says how much was lost.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closing = true
		q.mu.Unlock()
		q.poke()
		q.madeRoom() // a writer waiting for room gives up
		if q.started.Load() {
			t := time.NewTimer(q.cfg.FlushTimeout)
			select {
			case <-q.done:
			case <-t.C:
				q.cancel()
				// A connection gives up at once when told, but a write to a
				// pipe nobody reads cannot be interrupted: do not wait for
				// it for ever.
				t.Reset(time.Second)
				select {
				case <-q.done:
				case <-t.C:
				}
			}
			t.Stop()
		}
		q.cancel()
		q.mu.Lock()
		left := q.pending.len() + q.inflight
		q.mu.Unlock()
		q.undelivered.Store(uint64(left))
		q.closed.Store(true)
		if s := q.Stats(); s.Lost() > 0 {
			q.closeErr = fmt.Errorf("sinks: %s: %d of %d events not delivered (%d dropped with the queue full, %d rejected, %d undelivered after %v)",
				q.name, s.Lost(), s.Produced, s.Dropped, s.Rejected, s.Undelivered, q.cfg.FlushTimeout)
		}
	})
	return q.closeErr
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// madeRoom wakes a writer waiting for room (Wait), to look again.
func (q *Queue) madeRoom() {
	select {
	case q.room <- struct{}{}:
	default:
	}
}

// work is what the delivery goroutine is asked to do next.
type work int

const (
	workSend   work = iota // records were taken from the queue
	workSettle             // time to ask the connection what it settled
	workDrain              // closing, and nothing left waiting
	workRedial             // Redial was called
	workAbort              // the flush timeout passed
)

// settleEvery is how often a Settler is asked what it settled, and
// hurryEvery how often while the queue is short of room (see short): a
// destination's confirmations make room as they come, not a tick later.
// Asked in a hurry and settling nothing (a destination that stalls), it
// is asked half as often each time, back to settleEvery.
const (
	settleEvery = 50 * time.Millisecond
	hurryEvery  = time.Millisecond
)

// run is the delivery goroutine.
func (q *Queue) run() {
	defer close(q.done)
	var (
		conn    Conn
		settler Settler
		backoff = q.cfg.BackoffMin
		batch   = make([]*Record, 0, q.cfg.MaxBatch)
		timer   = time.NewTimer(settleEvery)
		hurry   = hurryEvery
	)
	defer timer.Stop()
	// fail closes a broken connection and queues again, first, what it had
	// not settled.
	fail := func(err error) {
		unsent := conn.Close()
		conn, settler = nil, nil
		if err != nil {
			q.failed.Add(uint64(len(unsent)))
		}
		q.mu.Lock()
		q.inflight -= len(unsent)
		q.pending.pushFront(unsent)
		q.mu.Unlock()
		if q.abort.Err() == nil {
			q.setDown(err)
		}
	}
	for {
		if conn == nil {
			q.mu.Lock()
			idle := q.pending.len() == 0
			closing := q.closing
			q.mu.Unlock()
			if closing && idle || q.abort.Err() != nil {
				return
			}
			if idle && !closing {
				// Connect when there is something to send.
				select {
				case <-q.wake:
				case <-q.abort.Done():
				}
				continue
			}
			q.mu.Lock()
			q.redial = false // a new connection is what it asks for
			q.mu.Unlock()
			c, err := q.dial.Dial(q.abort)
			if err != nil {
				if q.abort.Err() == nil {
					q.setDown(err)
				}
				if !q.sleep(backoff) {
					return
				}
				backoff = min(2*backoff, q.cfg.BackoffMax)
				continue
			}
			conn = c
			settler, _ = c.(Settler)
			q.setUp()
		}

		var tick <-chan time.Time
		if settler != nil {
			every := settleEvery
			if q.short() {
				every = hurry
			}
			timer.Reset(every)
			tick = timer.C
		}
		batch = batch[:0]
		w := q.next(&batch, tick)
		var (
			p   Progress
			err error
		)
		switch w {
		case workSend:
			p, err = conn.Send(q.abort, batch)
			clear(batch)
			if err == nil && settler != nil {
				// What the destination confirmed while this was sent.
				var more Progress
				more, err = settler.Settle(q.short())
				p.Delivered += more.Delivered
				p.Rejected += more.Rejected
			}
		case workSettle:
			p, err = settler.Settle(q.short())
			if p.Delivered+p.Rejected > 0 {
				hurry = hurryEvery
			} else {
				hurry = min(2*hurry, settleEvery)
			}
		case workDrain:
			if settler != nil {
				p, err = settler.Drain(q.abort)
			}
		}
		q.settled(p)
		switch {
		case err != nil:
			fail(err)
			// A destination that takes connections and fails sends must
			// not be hammered either.
			if !q.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, q.cfg.BackoffMax)
			continue
		case w == workSend:
			backoff = q.cfg.BackoffMin
		case w == workDrain && q.abort.Err() == nil:
			// Everything is settled: the connection's work is over.
			fail(nil)
			return
		case w == workRedial, w == workAbort:
			fail(nil)
		}
		if w == workAbort {
			return
		}
	}
}

// next waits for something to do. For workSend it moves up to MaxBatch
// records from the queue into batch and counts them in flight.
func (q *Queue) next(batch *[]*Record, tick <-chan time.Time) work {
	for {
		q.mu.Lock()
		switch {
		case q.abort.Err() != nil:
			q.mu.Unlock()
			return workAbort
		case q.redial:
			q.redial = false
			q.mu.Unlock()
			return workRedial
		case q.pending.len() > 0:
			*batch = q.pending.popFront(*batch, q.cfg.MaxBatch)
			q.inflight += len(*batch)
			q.mu.Unlock()
			return workSend
		case q.closing:
			q.mu.Unlock()
			return workDrain
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-tick:
			return workSettle
		case <-q.abort.Done():
		}
	}
}

// short reports whether the queue is at least half full: a Settler then
// confirms what it can at once (see Settler.Settle), so that a
// destination that keeps up never fills even a small queue.
func (q *Queue) short() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return 2*(q.pending.len()+q.inflight) >= q.cfg.Size
}

func (q *Queue) settled(p Progress) {
	if p.Delivered == 0 && p.Rejected == 0 {
		return
	}
	q.delivered.Add(uint64(p.Delivered))
	q.rejected.Add(uint64(p.Rejected))
	q.mu.Lock()
	q.inflight -= p.Delivered + p.Rejected
	q.stalled = false
	q.mu.Unlock()
	q.madeRoom()
}

// sleep waits for d, with some jitter so that sensors restarted together
// do not reconnect in step; false if the queue gave up meanwhile.
func (q *Queue) sleep(d time.Duration) bool {
	d += time.Duration(rand.Int64N(int64(d)/5 + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-q.abort.Done():
		return false
	}
}

func (q *Queue) setDown(err error) {
	if err == nil || q.down.Swap(true) {
		return
	}
	q.madeRoom() // a writer waiting for room drops instead
	q.log.Warn("output down", "err", err)
}

func (q *Queue) setUp() {
	if q.down.Swap(false) {
		q.log.Info("output up")
	}
}

// ring is a double-ended queue of records with a fixed capacity.
type ring struct {
	buf        []*Record
	head, size int
}

func newRing(n int) ring { return ring{buf: make([]*Record, n)} }

func (r *ring) len() int { return r.size }

func (r *ring) pushBack(rec *Record) {
	r.buf[(r.head+r.size)%len(r.buf)] = rec
	r.size++
}

// pushFront puts recs, in order, before what the ring holds.
func (r *ring) pushFront(recs []*Record) {
	for i := len(recs) - 1; i >= 0; i-- {
		r.head = (r.head - 1 + len(r.buf)) % len(r.buf)
		r.buf[r.head] = recs[i]
		r.size++
	}
}

// popFront appends up to n records from the front to dst.
func (r *ring) popFront(dst []*Record, n int) []*Record {
	for ; n > 0 && r.size > 0; n-- {
		dst = append(dst, r.buf[r.head])
		r.buf[r.head] = nil
		r.head = (r.head + 1) % len(r.buf)
		r.size--
	}
	return dst
}
