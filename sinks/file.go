package sinks

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// File is the destination for an output to a file, one event per line,
// appended. The Queue's Redial reopens the path, so logrotate can move the
// file away and signal the sensor to start a new one.
type File struct {
	Path   string
	Format Format
	// Perm is the mode of a file created; default 0640.
	Perm os.FileMode
}

var (
	_ Dialer  = (*File)(nil)
	_ Checker = (*File)(nil)
)

// Dial opens the file for appending, creating it if need be.
func (f *File) Dial(context.Context) (Conn, error) {
	perm := f.Perm
	if perm == 0 {
		perm = 0o640
	}
	fh, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, perm)
	if err != nil {
		return nil, fmt.Errorf("sinks/file: %w", err)
	}
	return &lineConn{w: fh, closer: fh, format: f.Format}, nil
}

// Check opens the file once, so that a path that cannot be written is an
// error at start-up rather than an output down for the whole run.
func (f *File) Check(ctx context.Context) error {
	c, err := f.Dial(ctx)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// parseFileURL makes the destination of file:///path[?format=eve|text].
func parseFileURL(u *url.URL, q queryValues) (*File, error) {
	if u.Host != "" && u.Host != "localhost" || u.Path == "" {
		return nil, errors.New("want file:///absolute/path")
	}
	f := &File{Path: u.Path}
	if v := q.take("format"); v != "" {
		var err error
		if f.Format, err = ParseFormat(v); err != nil {
			return nil, fmt.Errorf("format %q: want eve or text", v)
		}
	}
	if err := q.done(); err != nil {
		return nil, err
	}
	return f, nil
}
