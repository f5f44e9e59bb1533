package capture

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Filter decides which frames to keep, like a BPF program applied in user
// space. Match must not keep f or f.Data after it returns.
type Filter interface {
	Match(f *Frame) bool
}

// FilteredSource is a Source that delivers only the frames of another
// Source that a Filter matches, and counts the others. ReadFrame is for one
// goroutine at a time; the other methods may be called from any goroutine
// when the inner Source allows it.
type FilteredSource struct {
	src      Source
	flt      Filter
	rejected atomic.Uint64
}

var (
	_ Source      = (*FilteredSource)(nil)
	_ StatsSource = (*FilteredSource)(nil)
)

// Filtered returns a FilteredSource that reads src and skips the frames flt
// does not match. Errors from src pass through unchanged, so a FileSource
// goes on with its next file after an error just as without the filter.
// Closing the FilteredSource closes src.
//
// The optional interfaces of src are reached through Unwrap; Stats is
// forwarded for convenience.
func Filtered(src Source, flt Filter) *FilteredSource {
	return &FilteredSource{src: src, flt: flt}
}

// ReadFrame fills f with the next frame of the inner Source that the
// filter matches.
func (s *FilteredSource) ReadFrame(f *Frame) error {
	for {
		if err := s.src.ReadFrame(f); err != nil {
			return err
		}
		if s.flt.Match(f) {
			return nil
		}
		s.rejected.Add(1)
	}
}

// Close closes the inner Source.
func (s *FilteredSource) Close() error { return s.src.Close() }

// Filter returns the filter, for readers that apply it themselves (see
// FileSource.Split).
func (s *FilteredSource) Filter() Filter { return s.flt }

// Rejected returns how many frames the filter has skipped.
func (s *FilteredSource) Rejected() uint64 { return s.rejected.Load() }

// Unwrap returns the inner Source, for its optional interfaces (such as
// FileSource.FileStats).
func (s *FilteredSource) Unwrap() Source { return s.src }

// Stats returns the inner Source's counters. They count the frames before
// the filter. If the inner Source is not a StatsSource (a file has no
// kernel counters), the error wraps errors.ErrUnsupported.
func (s *FilteredSource) Stats() (SourceStats, error) {
	ss, ok := s.src.(StatsSource)
	if !ok {
		return SourceStats{}, fmt.Errorf("capture: %T has no capture counters: %w", s.src, errors.ErrUnsupported)
	}
	return ss.Stats()
}
