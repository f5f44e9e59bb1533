package sinks_test

import (
	"context"
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
