package capture_test

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/echowatch/echowatch/capture"
)

// fakeSource delivers frames whose first data byte is their number, and
// an error after the frames numbered in errAfter.
type fakeSource struct {
	n        int
	next     int
	errAfter map[int]error
	pending  error
	closed   int
}

func (s *fakeSource) ReadFrame(f *capture.Frame) error {
	if err := s.pending; err != nil {
		s.pending = nil
		return err
	}
	if s.next == s.n {
		return io.EOF
	}
	*f = capture.Frame{Data: []byte{byte(s.next)}, CaptureLength: 1, Length: 1}
	s.pending = s.errAfter[s.next]
	s.next++
	return nil
}

func (s *fakeSource) Close() error { s.closed++; return nil }

// fakeStatsSource is a fakeSource with kernel counters.
type fakeStatsSource struct{ fakeSource }

func (s *fakeStatsSource) Stats() (capture.SourceStats, error) {
	return capture.SourceStats{Received: 7, Dropped: 1}, nil
}

// matchFunc is a Filter.
type matchFunc func(f *capture.Frame) bool

func (m matchFunc) Match(f *capture.Frame) bool { return m(f) }

// evenFilter matches frames whose first byte is even.
type evenFilter struct{}

func (evenFilter) Match(f *capture.Frame) bool { return f.Data[0]%2 == 0 }

func TestFiltered(t *testing.T) {
	cut := fmt.Errorf("capture: a.pcap: %w after 3 packets", capture.ErrTruncated)
	for _, tc := range []struct {
		name         string
		n            int
		flt          capture.Filter
		errAfter     map[int]error
		want         []string
		wantRejected uint64
	}{
		{"nothing", 0, evenFilter{}, nil, nil, 0},
		{"every other frame", 5, evenFilter{}, nil, []string{"0", "2", "4"}, 2},
		{"all rejected", 3, matchFunc(func(*capture.Frame) bool { return false }), nil, nil, 3},
		{"an error passes through, and reading goes on", 6, evenFilter{}, map[int]error{2: cut},
			[]string{"0", "2", "error: " + cut.Error(), "4"}, 3},
		{"an error right after a rejected frame", 3, evenFilter{}, map[int]error{1: cut},
			[]string{"0", "error: " + cut.Error(), "2"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &fakeSource{n: tc.n, errAfter: tc.errAfter}
			src := capture.Filtered(inner, tc.flt)
			var got []string
			var f capture.Frame
			for {
				err := src.ReadFrame(&f)
				if err == io.EOF {
					break
				}
				if err != nil {
					got = append(got, "error: "+err.Error())
					if !errors.Is(err, capture.ErrTruncated) {
						t.Errorf("error %v no longer wraps ErrTruncated", err)
					}
					continue
				}
				got = append(got, fmt.Sprint(f.Data[0]))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("read %q, want %q", got, tc.want)
			}
			if got := src.Rejected(); got != tc.wantRejected {
				t.Errorf("Rejected() = %d, want %d", got, tc.wantRejected)
			}
		})
	}
}

func TestFilteredForwards(t *testing.T) {
	plain := &fakeSource{}
	src := capture.Filtered(plain, evenFilter{})
	if src.Unwrap() != capture.Source(plain) {
		t.Errorf("Unwrap() = %v, want the inner source", src.Unwrap())
	}
	if _, err := src.Stats(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Stats() of a source without counters: error %v, want errors.ErrUnsupported", err)
	}
	for range 2 {
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if plain.closed != 2 {
		t.Errorf("inner source closed %d times, want 2", plain.closed)
	}

	withStats := &fakeStatsSource{}
	st, err := capture.Filtered(withStats, evenFilter{}).Stats()
	if want := (capture.SourceStats{Received: 7, Dropped: 1}); err != nil || st != want {
		t.Errorf("Stats() = %+v, %v; want %+v", st, err, want)
	}
}
