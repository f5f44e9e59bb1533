package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapRecords reads the records of a classic pcap file, after its file
// header, without copying them: a frame's data is a slice of the buffer
// its record was read into, valid until the next call. pcapgo's reader
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
	link    layers.LinkType
	big     bool   // big-endian
	nanos   uint32 // nanoseconds per unit of a timestamp's fraction
	snaplen int    // as the header says, capped at MaxSnaplen
}

// readPcapHeader reads the file header of a classic pcap file, whose
// magic number isPcapMagic accepts, from br. pcapgo checks it; a link type
// the decoder cannot read is refused. br buffers at least 4 KiB, so that
// pcapgo reads from it rather than from a buffer of its own.
func readPcapHeader(br *bufio.Reader) (pcapHeader, error) {
	var magic [4]byte
	b, _ := br.Peek(len(magic))
	copy(magic[:], b) // pcapgo reads past it
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return pcapHeader{}, headerError("pcap", err)
	}
	if err := CheckLinkType(pr.LinkType()); err != nil {
		return pcapHeader{}, err
	}
	// pcapgo accepts records up to the snap length the file declares,
	// however large; the rest of pcapgo's guard is at MaxSnaplen.
	h := pcapHeader{link: pr.LinkType(), nanos: 1000, snaplen: int(min(pr.Snaplen(), MaxSnaplen))}
	switch binary.LittleEndian.Uint32(magic[:]) {
	case 0xa1b23c4d:
		h.nanos = 1
	case 0xd4c3b2a1:
		h.big = true
	case 0x4d3cb2a1:
		h.big, h.nanos = true, 1
	}
	return h, nil
}

// u32 reads a number in the file's byte order. (A binary.ByteOrder would
// cost an indirect call per field.)
func (h pcapHeader) u32(b []byte) uint32 {
	if h.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// record parses a 16-byte record header. Like pcapgo, it refuses (ok is
// false) a record longer than the larger of the snap length and 256 KiB.
func (h pcapHeader) record(b []byte) (ts time.Time, capLen, wireLen int, ok bool) {
	c := h.u32(b[8:12])
	if uint64(c) > uint64(max(h.snaplen, MaxSnaplen)) {
		return time.Time{}, int(min(c, 1<<31-1)), 0, false
	}
	// The fraction is multiplied in 32 bits, as pcapgo does, so that a
	// bogus fraction gives the time it always gave.
	ts = time.Unix(int64(h.u32(b[0:4])), int64(h.u32(b[4:8])*h.nanos)).UTC()
	return ts, int(c), int(h.u32(b[12:16])), true
}

// frame fills f with the frame of the record at the start of b, and
// returns the record's length, header included. When b holds less than
// the whole record, it fills nothing, ok is false, and n is how many bytes
// b must hold: the header's 16, then the whole record. A record that
// record refuses is an error, in pcapgo's words.
func (h pcapHeader) frame(f *Frame, b []byte) (n int, ok bool, err error) {
	if len(b) < 16 {
		return 16, false, nil
	}
	ts, c, wireLen, valid := h.record(b[:16])
	if !valid {
		return 0, false, fmt.Errorf("capture length exceeds snap length: %d > %d", h.u32(b[8:12]), h.snaplen)
	}
	if n = 16 + c; len(b) < n {
		return n, false, nil
	}
	// A frame is never shorter on the wire than captured; a record that
	// says so (tcpdump reads it) gets the captured length, so that byte
	// counts downstream never go below what was seen. Field by field: a
	// composite literal is built on the stack and copied, which stalls on
	// every frame.
	f.Data, f.Timestamp, f.CaptureLength, f.Length = b[16:n:n], ts, c, max(wireLen, c)
	f.LinkType, f.Interface = h.link, 0
	return n, true, nil
}

// newPcapRecords reads records from br, which is positioned after the file
// header, and from raw, what br reads from, once br has no more buffered.
func newPcapRecords(br *bufio.Reader, raw io.Reader, hdr pcapHeader) *pcapRecords {
	return &pcapRecords{hdr: hdr, r: br, buffered: br, raw: raw}
}

// next fills f with the next record's frame. Errors are those of
// pcapgo's reader: io.EOF at a record boundary, io.ErrUnexpectedEOF for a
// record cut short, and the same message for a record too long.
func (pr *pcapRecords) next(f *Frame) error {
	for {
		n, ok, err := pr.hdr.frame(f, pr.buf[pr.off:pr.end])
		if ok {
			pr.off += n
			return nil
		}
		if err == nil {
			// want reports a record cut short, having its first bytes.
			err = pr.want(n)
		}
		if err != nil {
			return err
		}
	}
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
		pr.buf = make([]byte, readChunk+16+MaxSnaplen)
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
