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
// header, without copying them: a frame's data is a slice of the window
// its record was read into, valid until the next call. pcapgo's reader
// copies every record out of its buffer, which costs as much as the read.
type pcapRecords struct {
	hdr pcapHeader
	w   *window
}

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

// u32 and u16 read a number in a file's byte order, big-endian or not. (A
// binary.ByteOrder would cost an indirect call per field.)
func u32(b []byte, big bool) uint32 {
	if big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func u16(b []byte, big bool) uint16 {
	if big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

// u32 reads a number in the file's byte order.
func (h *pcapHeader) u32(b []byte) uint32 { return u32(b, h.big) }

// record parses a 16-byte record header. Like pcapgo, it refuses (ok is
// false) a record longer than the larger of the snap length and 256 KiB.
func (h *pcapHeader) record(b []byte) (ts time.Time, capLen, wireLen int, ok bool) {
	c := h.u32(b[8:12])
	if uint64(c) > uint64(h.maxRecord()) {
		return time.Time{}, int(min(c, 1<<31-1)), 0, false
	}
	return h.time(b), int(c), int(h.u32(b[12:16])), true
}

// time is the timestamp of the record header b. The fraction is
// multiplied in 32 bits, as pcapgo does, so that a bogus fraction gives
// the time it always gave.
func (h *pcapHeader) time(b []byte) time.Time {
	return time.Unix(int64(h.u32(b[0:4])), int64(h.u32(b[4:8])*h.nanos)).UTC()
}

// maxRecord is the most data a record may hold.
func (h *pcapHeader) maxRecord() int { return max(h.snaplen, MaxSnaplen) }

// frame fills f with the frame of the record at the start of b, and
// returns the record's length, header included. When b holds less than
// the whole record, it fills nothing, ok is false, and n is how many bytes
// b must hold: the header's 16, then the whole record. A record that
// record refuses, or an empty one, is damage: why says what is wrong.
// It is on every frame's path: its checks are record's, without building
// a time for a record refused, and its words are refusal's.
func (h *pcapHeader) frame(f *Frame, b []byte) (n int, ok bool, why string) {
	if len(b) < 16 {
		return 16, false, ""
	}
	c, wireLen := h.u32(b[8:12]), h.u32(b[12:16])
	if uint64(c) > uint64(h.maxRecord()) || c == 0 && wireLen == 0 {
		return 0, false, h.refusal(c)
	}
	if n = 16 + int(c); len(b) < n {
		return n, false, ""
	}
	// A frame is never shorter on the wire than captured; a record that
	// says so (tcpdump reads it) gets the captured length, so that byte
	// counts downstream never go below what was seen. Field by field: a
	// composite literal is built on the stack and copied, which stalls on
	// every frame.
	f.Data, f.Timestamp, f.CaptureLength, f.Length = b[16:n:n], h.time(b), int(c), max(int(wireLen), int(c))
	f.LinkType, f.Interface = h.link, 0
	return n, true, ""
}

// refusal says why frame refuses a record whose captured length is c.
func (h *pcapHeader) refusal(c uint32) string {
	if c == 0 {
		// No capture tool writes it; zeroed bytes, a usual kind of
		// damage, read as a run of them.
		return "captured length 0, wire length 0"
	}
	return fmt.Sprintf("captured length %d is over %d", c, h.maxRecord())
}

// resyncRecords is how many records must follow each other plausibly from
// an offset for the reader to take it as where a record starts, when it
// does not know: after damage, and at the start of a Region.
const resyncRecords = 8

// plausible reports whether the records read plausibly from the start of
// b: resyncRecords of them (or as many as reach exactly the end of the
// input, when b holds all that is left of it: end) have headers that
// record accepts, wire lengths within MaxSnaplen and times within a day of
// each other. Only their headers are looked at. When b holds too little
// to tell, need is how many bytes it must hold.
func (h *pcapHeader) plausible(b []byte, end bool) (ok bool, need int) {
	off := 0
	var t0 int64
	for n := range resyncRecords {
		if off == len(b) && end {
			return n > 0, 0
		}
		if len(b) < off+16 {
			if end {
				return false, 0
			}
			return false, off + 16
		}
		ts, c, wire, valid := h.record(b[off : off+16])
		// Empty records are not plausible (see frame).
		if !valid || c == 0 || wire == 0 || wire > MaxSnaplen || (n > 0 && (ts.Unix() > t0+86400 || ts.Unix() < t0-86400)) {
			return false, 0
		}
		if n == 0 {
			t0 = ts.Unix()
		}
		off += 16 + c
	}
	return true, 0
}

// resync moves w past a damaged record, at its first unread byte, to the
// first offset after it from which the records read plausibly, if any
// does. found is false, w empty, when none does to the end of the input.
func (h *pcapHeader) resync(w *window) (found bool, err error) {
	if err := w.want(1); err != nil {
		return false, eofIsEnd(err)
	}
	w.off++
	for {
		b := w.bytes()
		if len(b) == 0 {
			if err := w.want(1); err != nil {
				return false, eofIsEnd(err)
			}
			continue
		}
		ok, need := h.plausible(b, w.ended())
		if ok {
			return true, nil
		}
		if need == 0 {
			w.off++
			continue
		}
		if err := w.want(need); err != nil && err != io.ErrUnexpectedEOF {
			return false, eofIsEnd(err)
		}
	}
}

// eofIsEnd returns nil for the end of the input, err otherwise.
func eofIsEnd(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}

// skip moves w past the damaged record at its first unread byte to the
// first offset after it from which the records read plausibly, and
// returns the stretch skipped. why says what is wrong with the record, as
// frame does; "" is a record of n bytes (header included) that the end of
// the input cuts short. Such a record with nothing readable after it is a
// cut, as a capture still being written has: io.ErrUnexpectedEOF.
func (h *pcapHeader) skip(w *window, n int, why string) (damage, error) {
	cut := why == ""
	if cut {
		why = fmt.Sprintf("captured length %d runs past the end of the file", n-16)
	}
	at := w.pos()
	found, err := h.resync(w)
	if err != nil {
		return damage{}, err
	}
	if cut && !found {
		return damage{}, io.ErrUnexpectedEOF
	}
	return damage{at: at, what: "record", why: why, skipped: w.pos() - at, toEnd: !found, unit: "record"}, nil
}

// next fills f with the next record's frame. Errors are io.EOF at a record
// boundary at the end, io.ErrUnexpectedEOF for a record cut short by the
// end (with nothing readable after it), and a *damage for a damaged
// stretch, skipped: the next call reads the record after it.
func (pr *pcapRecords) next(f *Frame) error {
	for {
		n, ok, why := pr.hdr.frame(f, pr.w.bytes())
		if ok {
			pr.w.off += n
			return nil
		}
		if why == "" {
			err := pr.w.want(n)
			if err == nil {
				continue
			}
			if err != io.ErrUnexpectedEOF || len(pr.w.bytes()) == 0 {
				return err // the end, a gzip stream cut between records, a read error
			}
		}
		d, err := pr.hdr.skip(pr.w, n, why)
		if err != nil {
			return err
		}
		return &d
	}
}
