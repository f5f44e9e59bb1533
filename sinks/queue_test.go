package sinks_test

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// TestCloseWithAStuckWriter: standard output piped to a reader that never
// reads cannot be interrupted; Close still returns, and counts what it
// could not deliver.
func TestCloseWithAStuckWriter(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	q := sinks.NewQueue("stdout", &sinks.Writer{W: w}, sinks.QueueConfig{Size: 1000, FlushTimeout: 100 * time.Millisecond})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 { // more than a pipe holds
		q.Write(sinkstest.Alert(1, i))
	}
	start := time.Now()
	err = q.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	s := q.Stats()
	if err == nil || s.Undelivered == 0 || s.Produced != s.Delivered+s.Undelivered || s.Queued != 0 {
		t.Fatalf("Close: %v, stats %+v", err, s)
	}
}

// TestQueueWaitSlowReader: with Wait, a destination that is up but slow
// (a pipe read at some MB/s, slower than the writer) holds the writer back
// instead of losing events, for as long as it makes progress, though a
// full queue takes longer than Wait to deliver; without Wait, it drops.
func TestQueueWaitSlowReader(t *testing.T) {
	// The reader takes 2 MB/s: a full queue (some 1.4 MB) takes longer
	// than the wait of 500 ms, and a batch of 256 events well less, even
	// on a machine five times slower than planned.
	for _, wait := range []time.Duration{0, 500 * time.Millisecond} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan int)
		go func() { // slow: a small read, a pause
			n, buf := 0, make([]byte, 4096)
			for {
				k, err := r.Read(buf)
				n += k
				if err != nil {
					read <- n
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		q := sinks.NewQueue("stdout", &sinks.Writer{W: w}, sinks.QueueConfig{Size: 2000, Wait: wait, FlushTimeout: 10 * time.Second})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		const events = 6000
		for i := range events {
			q.Write(sinkstest.Alert(1, i))
		}
		if err := q.Close(); (err == nil) != (wait > 0) {
			t.Errorf("wait %v: Close: %v", wait, err)
		}
		w.Close()
		n := <-read
		r.Close()
		s := q.Stats()
		switch {
		case wait > 0 && (s.Dropped != 0 || s.Delivered != events):
			t.Errorf("wait %v: %+v; want all %d delivered", wait, s, events)
		case wait == 0 && s.Dropped == 0:
			t.Errorf("wait 0: nothing dropped with a queue of 2000 (%d bytes read)", n)
		}
	}
}

// TestQueueWaitNotWhenStuck: a destination that is down, or that makes no
// room within Wait, does not hold the writer back for every event.
func TestQueueWaitNotWhenStuck(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		// A TCP port nobody listens on: the output starts down.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		d, err := sinks.NewSyslog(sinks.SyslogConfig{Network: "tcp", Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		q := sinks.NewQueue("syslog", d, sinks.QueueConfig{Size: 5, Wait: time.Minute, FlushTimeout: 100 * time.Millisecond})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := range 100 {
			q.Write(sinkstest.Alert(1, i))
			if i == 10 {
				time.Sleep(300 * time.Millisecond) // the first dial fails: down
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("100 events to a down output took %v", d)
		}
		q.Close()
		if s := q.Stats(); s.Dropped == 0 || s.Produced != 100 {
			t.Errorf("%+v: want drops", s)
		}
	})
	t.Run("stuck", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		q := sinks.NewQueue("stdout", &sinks.Writer{W: w}, sinks.QueueConfig{Size: 5, Wait: 200 * time.Millisecond, FlushTimeout: 100 * time.Millisecond})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := range 5000 { // a pipe nobody reads fills, then stalls
			q.Write(sinkstest.Alert(1, i))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("5000 events to a stuck pipe took %v: each waited", d)
		}
		q.Close()
		if s := q.Stats(); s.Dropped == 0 {
			t.Errorf("%+v: want drops", s)
		}
	})
}

// TestQueueWaitersAtClose: writers waiting for room when Close comes give
// up, every one, and their events count as dropped.
func TestQueueWaitersAtClose(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	q := sinks.NewQueue("stdout", &sinks.Writer{W: w}, sinks.QueueConfig{Size: 1, Wait: time.Minute, FlushTimeout: 100 * time.Millisecond})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A full pipe nobody reads: the writing goroutine blocks on the first
	// event, which fills the queue.
	w.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		if _, err := w.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	w.SetWriteDeadline(time.Time{})
	if err := q.Write(sinkstest.Alert(1, 0)); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for i := range 2 {
		go func() { errs <- q.Write(sinkstest.Alert(2, i)) }()
	}
	for q.Stats().Produced < 3 { // both wait for room
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { q.Close(); close(done) }()
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a waiting writer's event was taken after Close")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a writer still waits after Close")
		}
	}
	<-done
	if s := q.Stats(); s.Produced != s.Delivered+s.Dropped+s.Rejected+s.Undelivered {
		t.Errorf("%+v: the counts do not add up", s)
	}
}

// TestQueueWaitBudget: a live output waits for room only so long in a
// second. A destination that keeps making a little progress (a pipe read
// in small bites) would otherwise hold a writer with Wait back to its own
// pace for as long as it is written to; with a WaitBudget the writer waits
// that long, then drops and counts until the second is over.
func TestQueueWaitBudget(t *testing.T) {
	const events = 500 // about 2 s of what the reader takes
	run := func(budget *sinks.WaitBudget) (time.Duration, sinks.QueueStats) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		go func() { // slow but steady: 512 bytes every 2 ms
			buf := make([]byte, 512)
			for {
				if _, err := r.Read(buf); err != nil {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		q := sinks.NewQueue("stdout", &sinks.Writer{W: w}, sinks.QueueConfig{Size: 10, Wait: 100 * time.Millisecond,
			Budget: budget, FlushTimeout: 100 * time.Millisecond})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := range events {
			q.Write(sinkstest.Alert(1, i))
		}
		took := time.Since(start)
		q.Close()
		w.Close()
		return took, q.Stats()
	}
	paced, s := run(nil)
	if s.Dropped != 0 || paced < time.Second {
		t.Fatalf("without a budget: %v, %+v; want the writer held to the reader's pace, nothing dropped", paced, s)
	}
	capped, s := run(sinks.NewWaitBudget(100 * time.Millisecond))
	if s.Dropped == 0 || capped > paced/3 {
		t.Fatalf("with a budget of 100ms a second: %v (%v without), %+v; want drops, and the writer held back far less", capped, paced, s)
	}
	// Drained (the capture is over), the budget no longer drops: the
	// writer keeps the reader's pace until the deadline.
	drained := sinks.NewWaitBudget(100 * time.Millisecond)
	drained.Drain(time.Now().Add(time.Minute))
	if took, s := run(drained); s.Dropped != 0 || took < time.Second {
		t.Fatalf("with a drained budget: %v, %+v; want the writer held to the reader's pace, nothing dropped", took, s)
	}
	t.Logf("%d events to a slow reader: %v without a wait budget, %v with 100ms a second", events, paced, capped)
}
