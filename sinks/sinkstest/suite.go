// Package sinkstest tests echowatch's outputs against real servers: an
// rsyslogd and a Kafka-protocol broker started on loopback, and one
// conformance suite that every destination passes, in the spirit of
// testing/slogtest.
package sinkstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

// Target is one destination started for one test of the suite.
type Target struct {
	Dialer sinks.Dialer
	// Received returns the EVE JSON of every event that reached the
	// destination so far, in the order it arrived.
	Received func() []string
	// Stop and Start take the destination away and bring it back; nil
	// when it cannot go away (a file).
	Stop, Start func()
	// Lossy says what is sent as the destination goes down may be lost
	// unnoticed: datagrams in flight, or in a stopping collector's socket
	// buffer (UDP, unix datagram sockets).
	Lossy bool
	// Blind says the sender cannot tell the destination is gone at all
	// (UDP to a port nothing listens on may not even be refused).
	Blind bool
}

// Harness opens a new Target for each test.
type Harness func(t *testing.T) Target

// Run runs the conformance suite: write, order, flush on close, close
// twice, the queue bound, a small queue that keeps up with a steady
// stream, and a destination that goes away and comes back, or never does.
func Run(t *testing.T, open Harness) {
	t.Run("Write", func(t *testing.T) {
		tg := open(t)
		q, _ := startQueue(t, tg, sinks.QueueConfig{})
		a := Alert(1, 7)
		want := string(a.AppendEVE(nil))
		if err := q.Write(a); err != nil {
			t.Fatal(err)
		}
		// The alert is reused by detection: what was written is kept.
		a.Incident.Packets = 8
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		got := waitReceived(t, tg, 1)
		if len(got) != 1 || got[0] != want {
			t.Fatalf("received %q\nwant %q", got, want)
		}
		checkStats(t, q, 1, 1, 0)
	})
	t.Run("OrderPerIncident", func(t *testing.T) {
		tg := open(t)
		q, _ := startQueue(t, tg, sinks.QueueConfig{})
		const keys, per = 8, 250
		for i := range per {
			for k := range keys {
				mustWrite(t, q, Alert(k, i))
			}
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if tg.Lossy {
			checkOrder(t, waitReceived(t, tg, -1), keys, 0, true)
		} else {
			checkOrder(t, waitReceived(t, tg, keys*per), keys, per, true)
		}
		checkStats(t, q, keys*per, keys*per, 0)
	})
	t.Run("FlushOnClose", func(t *testing.T) {
		tg := open(t)
		q, _ := startQueue(t, tg, sinks.QueueConfig{Size: 5000})
		for i := range 5000 {
			mustWrite(t, q, Alert(i%3, i))
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if s := q.Stats(); s.Delivered != 5000 || s.Queued != 0 {
			t.Fatalf("after Close: %+v", s)
		}
		if tg.Lossy {
			checkOrder(t, waitReceived(t, tg, -1), 3, 0, true)
		} else {
			checkOrder(t, waitReceived(t, tg, 5000), 3, 0, true)
		}
	})
	t.Run("CloseTwice", func(t *testing.T) {
		tg := open(t)
		q, _ := startQueue(t, tg, sinks.QueueConfig{})
		mustWrite(t, q, Alert(1, 1))
		err1 := q.Close()
		start := time.Now()
		err2 := q.Close()
		if err1 != nil || err2 != nil || time.Since(start) > time.Second {
			t.Fatalf("Close: %v, again: %v after %v", err1, err2, time.Since(start))
		}
		if err := q.Write(Alert(1, 2)); !errors.Is(err, sinks.ErrClosed) {
			t.Fatalf("Write after Close: %v, want ErrClosed", err)
		}
		checkStats(t, q, 1, 1, 0)
	})
	t.Run("NeverStarted", func(t *testing.T) {
		tg := open(t)
		q := sinks.NewQueue("never", tg.Dialer, sinks.QueueConfig{})
		mustWrite(t, q, Alert(1, 1))
		if err := q.Close(); err == nil || q.Stats().Undelivered != 1 {
			t.Fatalf("Close of a queue never started: %v, %+v", err, q.Stats())
		}
	})
	t.Run("DestinationGoneAndBack", func(t *testing.T) {
		tg := open(t)
		if tg.Stop == nil {
			t.Skip("this destination cannot go away")
		}
		q, logs := startQueue(t, tg, sinks.QueueConfig{Size: 1000})
		seq := 0
		write := func(n int) {
			for range n {
				mustWrite(t, q, Alert(seq%4, seq/4))
				seq++
			}
		}
		write(100)
		waitDelivered(t, q, 100)
		tg.Stop()
		write(200) // while it is down, and as it goes
		if !tg.Lossy {
			waitDown(t, q)
		}
		write(100)
		tg.Start()
		write(100)
		if err := q.Close(); err != nil && !tg.Lossy {
			t.Fatal(err)
		}
		s := q.Stats()
		if s.Produced != s.Delivered+s.Dropped+s.Rejected+s.Undelivered || s.Produced != 500 {
			t.Fatalf("counts do not add up: %+v", s)
		}
		if tg.Lossy {
			return
		}
		if s.Delivered != 500 {
			t.Fatalf("delivered %d of 500: %+v", s.Delivered, s)
		}
		checkOrder(t, waitReceived(t, tg, 500), 4, 125, false)
		if down, up := logs.count("output down"), logs.count("output up"); down != 1 || up != 1 {
			t.Errorf("logged %d downs and %d ups, want one of each: %v", down, up, logs.all())
		}
	})
	t.Run("DestinationGoneForGood", func(t *testing.T) {
		tg := open(t)
		if tg.Stop == nil {
			t.Skip("this destination cannot go away")
		}
		q, _ := startQueue(t, tg, sinks.QueueConfig{Size: 50, FlushTimeout: 500 * time.Millisecond})
		mustWrite(t, q, Alert(0, 0))
		waitDelivered(t, q, 1)
		tg.Stop()
		for i := 1; i <= 80; i++ {
			err := q.Write(Alert(0, i))
			if err != nil && !errors.Is(err, sinks.ErrQueueFull) {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		err := q.Close()
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Close took %v with a flush timeout of 500ms", d)
		}
		s := q.Stats()
		if s.Produced != 81 || s.Produced != s.Delivered+s.Dropped+s.Rejected+s.Undelivered {
			t.Fatalf("counts do not add up: %+v", s)
		}
		if tg.Lossy {
			return
		}
		if err == nil || s.Undelivered == 0 || s.Dropped == 0 || s.Undelivered > 50 {
			t.Fatalf("Close: %v, stats %+v; want an error, some undelivered and some dropped", err, s)
		}
		if !strings.Contains(err.Error(), "not delivered") {
			t.Errorf("Close error %q does not say what was lost", err)
		}
	})
	t.Run("SmallQueueKeepsUp", func(t *testing.T) {
		// The queue bounds what an output holds at once, not its rate: a
		// live queue (no wait) of 10 events drops nothing of a steady
		// stream, 250 events/s, that the destination keeps up with.
		tg := open(t)
		q, _ := startQueue(t, tg, sinks.QueueConfig{Size: 10})
		const n = 300
		tick := time.NewTicker(4 * time.Millisecond)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			if err := q.Write(Alert(i%2, i/2)); err != nil {
				t.Fatalf("write %d of %d: %v; stats %+v", i+1, n, err, q.Stats())
			}
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		checkStats(t, q, n, n, 0)
		if tg.Lossy {
			checkOrder(t, waitReceived(t, tg, -1), 2, 0, true)
		} else {
			checkOrder(t, waitReceived(t, tg, n), 2, n/2, false)
		}
	})
	t.Run("QueueBound", func(t *testing.T) {
		tg := open(t)
		if tg.Stop == nil || tg.Blind {
			t.Skip("this destination cannot go away, or not so that a sender sees it")
		}
		tg.Stop()
		q, _ := startQueue(t, tg, sinks.QueueConfig{Size: 10, FlushTimeout: 10 * time.Second})
		full := 0
		for i := range 25 {
			if err := q.Write(Alert(0, i)); errors.Is(err, sinks.ErrQueueFull) {
				full++
			}
		}
		if s := q.Stats(); full != 15 || s.Dropped != 15 || s.Queued != 10 {
			t.Fatalf("%d writes refused, stats %+v; want 15 dropped and 10 queued", full, s)
		}
		tg.Start()
		if err := q.Close(); err == nil || !strings.Contains(err.Error(), "15 dropped") {
			t.Fatalf("Close: %v, want it to report 15 dropped", err)
		}
		if tg.Lossy {
			return
		}
		if s := q.Stats(); s.Delivered != 10 {
			t.Fatalf("after the destination came back: %+v", s)
		}
		checkOrder(t, waitReceived(t, tg, 10), 1, 10, true)
	})
}

// Alert returns a reflection alert about victim 192.0.2.key whose packet
// count is seq, so that a test can tell the alerts of one incident apart.
func Alert(key, seq int) *detect.Alert {
	sig, _ := detect.LookupSignature(detect.SIDReflection)
	victim := netip.AddrFrom4([4]byte{192, 0, 2, byte(key)})
	t := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Second)
	return &detect.Alert{
		Time:  t,
		Src:   netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), 7),
		Dst:   netip.AddrPortFrom(victim, 40000),
		Proto: capture.ProtoUDP,
		Host:  "sensor-1", Signature: sig, Severity: sig.Severity,
		Incident: detect.Incident{
			ID: fmt.Sprintf("incident-%d", key), Kind: detect.KindReflection, Phase: detect.PhaseUpdate,
			FirstSeen: t.Add(-time.Duration(seq) * time.Second), LastSeen: t,
			Packets: uint64(seq), Bytes: uint64(seq) * 100, Direction: "inbound",
			Victim: netip.PrefixFrom(victim, 32), ReflectorCount: 1,
			Reflectors: []detect.Reflector{{Addr: netip.MustParseAddr("198.51.100.7"), Port: 7, Packets: 1, Bytes: 100}},
			Services:   []string{"echo"}, Advice: sig.Advice,
		},
	}
}

// Parse returns the incident id and packet count of an alert made by
// Alert.
func Parse(eve string) (id string, seq int, err error) {
	var v struct {
		Incident struct {
			ID      string `json:"id"`
			Packets int    `json:"packets"`
		} `json:"incident"`
	}
	err = json.Unmarshal([]byte(eve), &v)
	return v.Incident.ID, v.Incident.Packets, err
}

// checkOrder checks that every incident's alerts arrived in order and,
// when per > 0, that all of 0..per-1 arrived for each of keys incidents.
// Repeats (at least once) are allowed unless exact is set; order is that
// of first arrivals.
func checkOrder(t *testing.T, got []string, keys, per int, exact bool) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, eve := range got {
		id, seq, err := Parse(eve)
		if err != nil {
			t.Fatalf("not EVE JSON: %v: %q", err, eve)
		}
		if seen[eve] {
			if exact {
				t.Fatalf("received twice: %s", eve)
			}
			continue
		}
		seen[eve] = true
		if seq < next[id] {
			t.Fatalf("%s: alert %d arrived after %d", id, seq, next[id]-1)
		}
		next[id] = seq + 1
	}
	if len(next) != keys {
		t.Fatalf("%d incidents arrived, want %d", len(next), keys)
	}
	if per > 0 {
		for id, n := range next {
			if n != per {
				t.Fatalf("%s: last alert %d, want %d", id, n-1, per-1)
			}
		}
		if len(seen) != keys*per {
			t.Fatalf("%d distinct alerts, want %d", len(seen), keys*per)
		}
	}
}

func startQueue(t *testing.T, tg Target, cfg sinks.QueueConfig) (*sinks.Queue, *LogRecorder) {
	t.Helper()
	logs := &LogRecorder{}
	cfg.Logger = slog.New(logs)
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	}
	if cfg.FlushTimeout == 0 {
		cfg.FlushTimeout = 20 * time.Second
	}
	q := sinks.NewQueue(t.Name(), tg.Dialer, cfg)
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, logs
}

func mustWrite(t *testing.T, q *sinks.Queue, a *detect.Alert) {
	t.Helper()
	if err := q.Write(a); err != nil {
		t.Fatal(err)
	}
}

func checkStats(t *testing.T, q *sinks.Queue, produced, delivered, lost uint64) {
	t.Helper()
	s := q.Stats()
	if s.Produced != produced || s.Delivered != delivered || s.Lost() != lost || s.Queued != 0 {
		t.Fatalf("stats %+v, want %d produced, %d delivered, %d lost", s, produced, delivered, lost)
	}
}

// waitDown waits until the queue has seen its destination fail.
func waitDown(t *testing.T, q *sinks.Queue) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for q.Stats().Up {
		if time.Now().After(deadline) {
			t.Fatalf("the output never noticed its destination was gone: %+v", q.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitDelivered(t *testing.T, q *sinks.Queue, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for q.Stats().Delivered < n {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %+v, want %d", q.Stats(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitReceived waits until the destination has at least n distinct events
// (a reconnection sends again what was not settled, so copies must not make
// up the count), and a little more for any repeat still on its way. With
// n < 0 it waits until something arrived and then nothing more does: a
// lossy destination may never have everything.
func waitReceived(t *testing.T, tg Target, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	if n < 0 {
		last := -1
		for {
			time.Sleep(300 * time.Millisecond)
			got := tg.Received()
			if len(got) == last && (last > 0 || time.Now().After(deadline)) {
				return got
			}
			last = len(got)
		}
	}
	for {
		got := tg.Received()
		if distinct(got) >= n {
			time.Sleep(50 * time.Millisecond)
			return tg.Received()
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d distinct events, want %d", distinct(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func distinct(events []string) int {
	seen := make(map[string]bool, len(events))
	for _, e := range events {
		seen[e] = true
	}
	return len(seen)
}

// LogRecorder is a slog.Handler that keeps the messages logged.
type LogRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *LogRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *LogRecorder) WithGroup(string) slog.Handler            { return l }
func (l *LogRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *LogRecorder) count(msg string) int {
	n := 0
	for _, m := range l.all() {
		if m == msg {
			n++
		}
	}
	return n
}

func (l *LogRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}
