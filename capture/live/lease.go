package live

import (
	"sync/atomic"
	"time"
)

// lendGrace is how long Close waits for the reader to come back for the
// next frame before it releases a capture whose last frame is still lent.
const lendGrace = time.Second

// Bits of lease.state.
const (
	leaseReading  uint32 = 1 << iota // a ReadFrame is in the capture
	leaseLent                        // the reader may still use its last frame
	leaseClosing                     // Close was called
	leaseReleased                    // the capture is released (or being released)
	leaseLapsed                      // released with its last frame's loan lapsed
)

// A lease lets Close, called from any goroutine, release a capture that one
// other goroutine reads. Both captures hand out frames that point into a
// ring shared with the kernel, and releasing a capture unmaps its ring: a
// frame touched after that is a crash, not a stale read. So the capture is
// released only when nobody can touch it: not while a read is in the
// kernel (it notices Close within readTimeout), and not while the reader
// may still use the last frame it got, which ends when it calls ReadFrame
// again. Close waits for that at most lendGrace, as the goroutine calling
// Close may be the reader itself, which will not read again.
//
// The state is one atomic word, so a read through the lease costs two
// compare-and-swaps and no lock. AFPacket goes through it only to wait for
// the next ring block: the frames of a block it holds are lent already.
type lease struct {
	state   atomic.Uint32
	release func()        // frees the capture; run once, by whoever sets leaseReleased
	done    chan struct{} // closed once release has returned
	grace   time.Duration // lendGrace, shorter in tests
}

func newLease(release func()) *lease {
	return &lease{release: release, done: make(chan struct{}), grace: lendGrace}
}

// update moves the state through next, releasing the capture when Close
// was called and nobody uses it any more. It returns the new state.
func (l *lease) update(next func(uint32) uint32) uint32 {
	for {
		old := l.state.Load()
		s := next(old)
		if s&leaseClosing != 0 && s&(leaseReading|leaseLent) == 0 {
			s |= leaseReleased
		}
		if !l.state.CompareAndSwap(old, s) {
			continue
		}
		if s&^old&leaseReleased != 0 {
			l.release()
			close(l.done)
		}
		return s
	}
}

// begin starts a read, which ends the loan of the previous frame. It
// returns false when the capture is closed: ReadFrame returns io.EOF.
func (l *lease) begin() bool {
	return l.update(beginRead)&leaseClosing == 0
}

// stopping reports whether Close was called; a read checks it after every
// read timeout and then ends with end(false).
func (l *lease) stopping() bool {
	return l.state.Load()&leaseClosing != 0
}

// end ends a read; lent says that it got a frame for the reader. It returns
// false when Close was called meanwhile: the capture is then released, and
// ReadFrame must return io.EOF, not the frame.
func (l *lease) end(lent bool) bool {
	next := endRead
	if lent {
		next = endReadLent
	}
	return l.update(next)&leaseClosing == 0
}

// close asks for the capture to be released and returns once it is. It is
// safe to call from any goroutine, and more than once.
func (l *lease) close() {
	l.update(func(old uint32) uint32 { return old | leaseClosing })
	t := time.NewTimer(l.grace)
	defer t.Stop()
	select {
	case <-l.done:
		return
	case <-t.C:
	}
	// The reader did not come back for another frame, so it should be
	// done with the last one; the release is told (lapsed), in case it is
	// not. A read still in the kernel ends within readTimeout and releases
	// the capture itself.
	l.update(func(old uint32) uint32 {
		if old&leaseReading != 0 || old&leaseLent == 0 {
			return old
		}
		return old&^leaseLent | leaseLapsed
	})
	<-l.done
}

// lapsed reports whether the capture was released while its reader might
// still have held its last frame: Close gave up waiting for the reader.
// The release may ask it, to leave the frame's memory readable.
func (l *lease) lapsed() bool { return l.state.Load()&leaseLapsed != 0 }

func beginRead(old uint32) uint32 {
	if old&leaseClosing != 0 {
		return old &^ leaseLent
	}
	return old&^leaseLent | leaseReading
}

func endRead(old uint32) uint32 { return old &^ leaseReading }

func endReadLent(old uint32) uint32 {
	if old&leaseClosing != 0 {
		return old &^ leaseReading
	}
	return old&^leaseReading | leaseLent
}
