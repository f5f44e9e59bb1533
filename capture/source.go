package capture

import "errors"

// Source delivers captured frames in capture order.
//
// ReadFrame fills f with the next frame; f.Data is borrowed until the next
// call. It returns io.EOF at the end of the input. A Source is used by one
// goroutine at a time. Close releases the Source and is safe to call twice.
type Source interface {
	ReadFrame(f *Frame) error
	Close() error
}

// StatsSource is a Source that can report capture counters (kernel packet
// and drop counters for live capture).
type StatsSource interface {
	Stats() (SourceStats, error)
}

// SourceStats are the counters a live capture reports.
type SourceStats struct {
	// Received is what the kernel saw for us; Dropped what it dropped
	// because we were too slow; IfDropped what the interface dropped.
	Received  uint64
	Dropped   uint64
	IfDropped uint64
	// Freezes counts AF_PACKET ring freezes (TPACKET_V3 queue freezes).
	Freezes uint64
}

// ErrTruncated is wrapped by a file Source's error when the capture ends
// in the middle of a record: the frames read before it are good.
var ErrTruncated = errors.New("capture file is truncated")

// ErrDamaged is wrapped by a file Source's error for a stretch of a
// capture file that could not be read as records: a block or record whose
// lengths contradict each other or the format, a block of no known type.
// The reader skipped it, to the next record that reads well, and went on.
var ErrDamaged = errors.New("capture file is damaged")

// InputError is a FileSource's error for one of its inputs: a cut
// (wrapping ErrTruncated), a damaged stretch (ErrDamaged), or an input that
// could not be read. The source goes on after it, with the rest of the
// input or with the next one.
type InputError struct {
	Name string // the input as given to OpenFiles; "-" is stdin
	Err  error  // names the input
}

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// ErrTimeout is returned by a live Source's ReadFrame when no frame arrived
// within its read timeout. It is not a failure: the caller gets a chance
// to flush what it holds and to notice that it should stop, then calls
// ReadFrame again.
var ErrTimeout = errors.New("capture read timeout")
