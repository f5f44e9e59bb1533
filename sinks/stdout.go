package sinks

import (
	"bufio"
	"fmt"
	"io"
	"sync"
)

// Format selects how a stream sink renders events.
type Format int

const (
	// FormatEVE writes one EVE JSON object per line.
	FormatEVE Format = iota
	// FormatText writes one readable line per event.
	FormatText
)

// ParseFormat parses "eve" or "text".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "eve", "json":
		return FormatEVE, nil
	case "text":
		return FormatText, nil
	}
	return 0, fmt.Errorf("sinks: unknown format %q (want eve or text)", s)
}

// Stream writes events as lines to a writer such as standard output. Each
// event is flushed as it is written, so a reader of a pipe sees alerts as
// they happen; alerts are few, so this costs nothing that matters.
type Stream struct {
	name   string
	format Format
	w      *bufio.Writer
	buf    []byte
	mu     sync.Mutex
	closed bool
}

var _ Sink = (*Stream)(nil)

// NewStream returns a sink that writes to w. name identifies it in errors
// ("stdout").
func NewStream(name string, w io.Writer, format Format) *Stream {
	return &Stream{name: name, format: format, w: bufio.NewWriterSize(w, 64<<10)}
}

// Write implements Sink.
func (s *Stream) Write(ev Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("sinks/%s: write after close", s.name)
	}
	if s.format == FormatText {
		s.buf = ev.AppendText(s.buf[:0])
	} else {
		s.buf = ev.AppendEVE(s.buf[:0])
	}
	s.buf = append(s.buf, '\n')
	if _, err := s.w.Write(s.buf); err != nil {
		return fmt.Errorf("sinks/%s: write: %w", s.name, err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("sinks/%s: write: %w", s.name, err)
	}
	return nil
}

// Close implements Sink. It flushes and leaves the underlying writer open:
// standard output belongs to the process.
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("sinks/%s: flush: %w", s.name, err)
	}
	return nil
}
