package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// pcapRecords reads the records of a classic pcap file, after its file
// header, without copying them: a record's data is returned as a slice of
// the buffer it was read into, valid until the next call. pcapgo's reader
// copies every record out of its buffer, which costs as much as the read.
//
// The file is read readChunk at a time: a chunk fits the CPU's L2 cache,
// so the records are still there when the decoder reads them.
type pcapRecords struct {
	hdr pcapHeader
	// r is what the records are read from: first buffered, the reader
	// that read the file header and some way beyond it, then, once that
	// is used up, raw, the reader under it.
	r        io.Reader
	buffered *bufio.Reader
	raw      io.Reader

	buf      []byte
	off, end int // the unread data: buf[off:end]
	err      error
}

const readChunk = 256 << 10

// pcapHeader is what reading a classic pcap file's records needs from its
// file header.
type pcapHeader struct {
	big     bool   // big-endian
	nanos   uint32 // nanoseconds per unit of a timestamp's fraction
	snaplen int    // as the header says, capped at maxRecordLength
}

// newPcapHeader reads the byte order and timestamp unit from the magic
// number; the magic must be one of a classic pcap file (isPcapMagic).
func newPcapHeader(magic []byte, snaplen int) pcapHeader {
	h := pcapHeader{nanos: 1000, snaplen: snaplen}
	switch binary.LittleEndian.Uint32(magic) {
	case 0xa1b23c4d:
		h.nanos = 1
	case 0xd4c3b2a1:
		h.big = true
	case 0x4d3cb2a1:
		h.big, h.nanos = true, 1
	}
	return h
}

// u32 reads a number in the file's byte order. (A binary.ByteOrder would
// cost an indirect call per field.)
func (h pcapHeader) u32(b []byte) uint32 {
	if h.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// record parses a 16-byte record header. Like pcapgo, it refuses a record
// longer than the larger of the snap length and 256 KiB: ok is false, and
// tooLong says why.
func (h pcapHeader) record(b []byte) (ts time.Time, capLen, wireLen int, ok bool) {
	c := h.u32(b[8:12])
	if uint64(c) > uint64(max(h.snaplen, maxRecordLength)) {
		return time.Time{}, int(min(c, 1<<31-1)), 0, false
	}
	// The fraction is multiplied in 32 bits, as pcapgo does, so that a
	// bogus fraction gives the time it always gave.
	ts = time.Unix(int64(h.u32(b[0:4])), int64(h.u32(b[4:8])*h.nanos)).UTC()
	return ts, int(c), int(h.u32(b[12:16])), true
}

// tooLong is the error for a record that record refuses, in pcapgo's words.
func (h pcapHeader) tooLong(b []byte) error {
	return fmt.Errorf("capture length exceeds snap length: %d > %d", h.u32(b[8:12]), h.snaplen)
}

// newPcapRecords reads records from br, which is positioned after the file
// header, and from raw, what br reads from, once br has no more buffered.
func newPcapRecords(br *bufio.Reader, raw io.Reader, hdr pcapHeader) *pcapRecords {
	return &pcapRecords{hdr: hdr, r: br, buffered: br, raw: raw}
}

// next returns the next record's data and capture info. Errors are those
// of pcapgo's reader: io.EOF at a record boundary, io.ErrUnexpectedEOF for
// a record cut short, and the same message for a record too long.
func (pr *pcapRecords) next() (data []byte, ts time.Time, wireLen int, err error) {
	if err := pr.want(16); err != nil {
		return nil, time.Time{}, 0, err
	}
	ts, n, wireLen, ok := pr.hdr.record(pr.buf[pr.off : pr.off+16])
	if !ok {
		return nil, time.Time{}, 0, pr.hdr.tooLong(pr.buf[pr.off : pr.off+16])
	}
	if err := pr.want(16 + n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, time.Time{}, 0, err
	}
	data = pr.buf[pr.off+16 : pr.off+16+n : pr.off+16+n]
	pr.off += 16 + n
	return data, ts, wireLen, nil
}

// want makes n unread bytes available, reading more as needed. It returns
// io.EOF if the input ended before any of them, and io.ErrUnexpectedEOF if
// it ended partway.
func (pr *pcapRecords) want(n int) error {
	for pr.end-pr.off < n {
		if pr.err != nil {
			if pr.err == io.EOF && pr.end > pr.off {
				return io.ErrUnexpectedEOF
			}
			return pr.err
		}
		pr.fill(n)
	}
	return nil
}

// fill moves the unread bytes to the front of the buffer and reads up to
// a chunk after them (more if a record of n bytes needs it).
func (pr *pcapRecords) fill(n int) {
	if pr.buf == nil {
		pr.buf = make([]byte, readChunk+16+maxRecordLength)
	}
	if pr.off > 0 {
		pr.end = copy(pr.buf, pr.buf[pr.off:pr.end])
		pr.off = 0
	}
	if pr.buffered != nil && pr.buffered.Buffered() == 0 {
		// What the file header's reader had read ahead is used up: from
		// now on, read the file straight into the buffer.
		pr.r, pr.buffered = pr.raw, nil
	}
	m, err := pr.r.Read(pr.buf[pr.end:max(readChunk, n)])
	pr.end += m
	if err != nil {
		pr.err = err
	}
}
