package capture

import (
	"bufio"
	"io"
)

// window is the unread part of an input, which the record readers parse in
// place: a frame's data is a slice of the window, valid until the next
// read. The input is read a chunk at a time: a chunk fits the CPU's L2
// cache, so the records are still there when the decoder reads them.
type window struct {
	// r is what the input is read from: first buffered, the reader that
	// read the file header and some way beyond it, then, once that is
	// used up, raw, the reader under it.
	r        io.Reader
	buffered *bufio.Reader
	raw      io.Reader
	chunk    int // how much one read asks for

	buf      []byte
	off, end int   // the unread data: buf[off:end]
	base     int64 // the input offset of buf[0]
	err      error // what ended reading the input: io.EOF at its end
}

const readChunk = 256 << 10

// newWindow reads the input from br, which has read its file header, and
// from raw, what br reads from, once br has no more buffered. at is the
// input offset br is at; chunk is how much to read at a time.
func newWindow(br *bufio.Reader, raw io.Reader, at int64, chunk int) *window {
	return &window{r: br, buffered: br, raw: raw, chunk: chunk, base: at}
}

// reset makes w read the input from r, at offset at, a chunk of readChunk
// at a time, into the buffer it has.
func (w *window) reset(r io.Reader, at int64) {
	*w = window{r: r, chunk: readChunk, buf: w.buf, base: at}
}

// bytes returns the unread data.
func (w *window) bytes() []byte { return w.buf[w.off:w.end] }

// pos returns the input offset of the first unread byte.
func (w *window) pos() int64 { return w.base + int64(w.off) }

// ended reports whether the input has no more than the unread data: it
// ended, cleanly or cut short (gzip's io.ErrUnexpectedEOF).
func (w *window) ended() bool { return w.err == io.EOF || w.err == io.ErrUnexpectedEOF }

// want makes n unread bytes available, reading more as needed. It returns
// io.EOF if the input ended before any of them, io.ErrUnexpectedEOF if it
// ended partway (or if a gzip stream was cut), and a read error as is.
func (w *window) want(n int) error {
	for w.end-w.off < n {
		if w.err != nil {
			if w.err == io.EOF && w.end > w.off {
				return io.ErrUnexpectedEOF
			}
			return w.err
		}
		w.fill(n)
	}
	return nil
}

// fill moves the unread bytes to the front of the buffer and reads up to
// a chunk after them (more if n bytes need it).
func (w *window) fill(n int) {
	if size := max(w.chunk, n); len(w.buf) < size {
		// A first read, or a record or block larger than any before.
		buf := make([]byte, max(size, 2*len(w.buf)))
		w.end = copy(buf, w.buf[w.off:w.end])
		w.base += int64(w.off)
		w.buf, w.off = buf, 0
	} else if w.off > 0 {
		w.end = copy(w.buf, w.buf[w.off:w.end])
		w.base += int64(w.off)
		w.off = 0
	}
	if w.buffered != nil && w.buffered.Buffered() == 0 {
		// What the file header's reader had read ahead is used up: from
		// now on, read the file straight into the buffer.
		w.r, w.buffered = w.raw, nil
	}
	m, err := w.r.Read(w.buf[w.end:max(w.chunk, n)])
	w.end += m
	if err != nil {
		w.err = err
	}
}
