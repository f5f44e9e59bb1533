package live

import (
	"sync/atomic"
	"testing"
	"time"
)

// countingLease returns a lease whose release counts its calls.
func countingLease() (*lease, *atomic.Int32) {
	var n atomic.Int32
	return newLease(func() { n.Add(1) }), &n
}

func TestLeaseCloseIdle(t *testing.T) {
	l, released := countingLease()
	l.close()
	l.close() // twice is fine
	if n := released.Load(); n != 1 {
		t.Fatalf("released %d times, want 1", n)
	}
	if l.begin() {
		t.Error("begin after close = true, want false (io.EOF)")
	}
}

// The reader's last read ended in an error: no frame is lent, so Close
// releases at once.
func TestLeaseCloseAfterError(t *testing.T) {
	l, released := countingLease()
	if !l.begin() || !l.end(false) {
		t.Fatal("read on an open lease failed")
	}
	start := time.Now()
	l.close()
	if released.Load() != 1 || time.Since(start) > l.grace/2 {
		t.Errorf("released %d times after %v, want once at once", released.Load(), time.Since(start))
	}
}

// Close while a read is in the kernel: the read notices, ends, and is
// the one to release.
func TestLeaseCloseDuringRead(t *testing.T) {
	l, released := countingLease()
	if !l.begin() {
		t.Fatal("begin on an open lease = false")
	}
	closed := make(chan struct{})
	go func() { l.close(); close(closed) }()
	for !l.stopping() {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-closed:
		t.Fatal("close returned while a read was in the capture")
	case <-time.After(20 * time.Millisecond):
	}
	if released.Load() != 0 {
		t.Fatal("released while a read was in the capture")
	}
	if l.end(true) {
		t.Error("end after close = true, want false (io.EOF, not the frame)")
	}
	<-closed
	if n := released.Load(); n != 1 {
		t.Errorf("released %d times, want 1", n)
	}
}

// Close while the reader still uses its last frame: the release waits for
// the reader's next ReadFrame.
func TestLeaseCloseWhileLent(t *testing.T) {
	l, released := countingLease()
	if !l.begin() || !l.end(true) {
		t.Fatal("read on an open lease failed")
	}
	closed := make(chan struct{})
	go func() { l.close(); close(closed) }()
	for !l.stopping() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if released.Load() != 0 {
		t.Fatal("released while the reader may use its last frame")
	}
	if l.begin() {
		t.Error("begin after close = true, want false (io.EOF)")
	}
	<-closed
	if n := released.Load(); n != 1 {
		t.Errorf("released %d times, want 1", n)
	}
	if l.lapsed() {
		t.Error("lapsed after the reader came back, want false: the ring may go")
	}
}

// The reader itself closes after its last frame: Close waits out the
// grace and releases, telling the release that the loan lapsed.
func TestLeaseCloseByReader(t *testing.T) {
	l, released := countingLease()
	l.grace = 50 * time.Millisecond
	if !l.begin() || !l.end(true) {
		t.Fatal("read on an open lease failed")
	}
	start := time.Now()
	l.close()
	if n := released.Load(); n != 1 {
		t.Errorf("released %d times, want 1", n)
	}
	if d := time.Since(start); d < l.grace {
		t.Errorf("close took %v, want the grace %v", d, l.grace)
	}
	if !l.lapsed() {
		t.Error("not lapsed after the grace, want true: the last frame may still be read")
	}
}

func BenchmarkLeaseRead(b *testing.B) {
	l, _ := countingLease()
	b.ReportAllocs()
	for b.Loop() {
		l.begin()
		l.end(true)
	}
}
