package sinks

import (
	"bufio"
	"context"
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

// Writer is the destination for an output to a writer that is already
// open and belongs to someone else, such as standard output: one event per
// line. A failed write is tried again, from that event on.
type Writer struct {
	W      io.Writer
	Format Format
}

var _ Dialer = (*Writer)(nil)

// Dial implements Dialer.
func (w *Writer) Dial(context.Context) (Conn, error) {
	return &lineConn{w: w.W, format: w.Format}, nil
}

// lineConn writes events as lines to a writer. What Write accepted is
// delivered: a file's bytes are the kernel's from then on.
type lineConn struct {
	w      io.Writer
	closer io.Closer // the file, when the connection owns it
	format Format
	buf    []byte
	unsent []*Record
}

func (c *lineConn) Send(_ context.Context, recs []*Record) (Progress, error) {
	c.buf = c.buf[:0]
	for _, r := range recs {
		if c.format == FormatText {
			c.buf = r.AppendText(c.buf)
		} else {
			c.buf = append(c.buf, r.EVE...)
		}
		c.buf = append(c.buf, '\n')
	}
	if _, err := c.w.Write(c.buf); err != nil {
		// A part may have been written: at least once, it is all sent again.
		c.unsent = append(c.unsent, recs...)
		return Progress{}, err
	}
	return Progress{Delivered: len(recs)}, nil
}

func (c *lineConn) Close() []*Record {
	if c.closer != nil {
		c.closer.Close()
	}
	return c.unsent
}
