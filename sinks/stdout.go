package sinks

import (
	"context"
	"fmt"
	"io"
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
