package sinkstest

import (
	"testing"
	"time"
)

// WaitFor waits until cond holds, polling, and fails the test if it does
// not within 10 seconds: for what outputs deliver in the background.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
