package capture

import "io"

// SetRegionSize makes Split cut regions of n bytes, and returns a function
// that restores the size.
func SetRegionSize(n int64) (restore func()) {
	old := regionSize
	regionSize = n
	return func() { regionSize = old }
}

// NewStopReader returns the reader OpenFiles reads standard input with:
// its reads return os.ErrClosed once stop is closed.
func NewStopReader(r io.Reader, stop <-chan struct{}) io.Reader {
	return newStopReader(r, stop)
}

// Damages is how many damaged stretches the region keeps for Check to
// report.
func (r *Region) Damages() int { return len(r.damages) }
