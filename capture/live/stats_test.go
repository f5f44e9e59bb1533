package live

import (
	"errors"
	"testing"

	"github.com/echowatch/echowatch/capture"
)

// The kernel's 32-bit counters wrap; Stats goes on counting, and after
// release returns the last counters without touching the capture.
func TestKernelStats(t *testing.T) {
	counters := [4]uint32{0xfffffff0, 3, 0, 7}
	var readErr error
	released := false
	k := kernelStats{iface: "eth9", read: func() ([4]uint32, error) {
		if released {
			t.Error("counters read after release")
		}
		return counters, readErr
	}}
	want := func(w capture.SourceStats) {
		t.Helper()
		got, err := k.get()
		if err != nil || got != w {
			t.Errorf("get() = %+v, %v; want %+v", got, err, w)
		}
	}
	want(capture.SourceStats{Received: 0xfffffff0, Dropped: 3, Freezes: 7})
	counters = [4]uint32{0x10, 3, 1, 7} // received wrapped
	want(capture.SourceStats{Received: 1<<32 + 0x10, Dropped: 3, IfDropped: 1, Freezes: 7})

	readErr = errors.New("bad file descriptor")
	if _, err := k.get(); err == nil || err.Error() != "capture/live: eth9: stats: bad file descriptor" {
		t.Errorf("get() error %v", err)
	}
	readErr = nil

	counters[1] = 5
	k.release(func() { released = true })
	if !released {
		t.Fatal("release did not free the capture")
	}
	want(capture.SourceStats{Received: 1<<32 + 0x10, Dropped: 5, IfDropped: 1, Freezes: 7})
}
