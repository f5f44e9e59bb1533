package capture

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// regionSize is the span of a classic pcap file that one Region reads:
// large enough that handing regions out costs little, and read a chunk at
// a time, so that its records are still in the CPU's cache when the
// decoder reads them. Tests make it smaller.
var regionSize int64 = 2 << 20

// Split cuts what is left of the timeline into regions of consecutive
// frames, for several goroutines to read and decode at once: a Splitter
// hands the regions out in order, and each goroutine reads its region's
// bytes itself, into its own cache. Reading a file on one goroutine and
// decoding it on others would move every frame from core to core, which
// costs about as much as decoding it.
//
// A region is a span of the file; its frames are those whose records
// start in it. Where the first of them starts, only the region before
// knows, so a region finds it itself, as the first of a few records that
// follow each other plausibly, and Check, which takes the regions back in
// order, confirms it against where the region before ended. A region that
// guessed wrong (which takes a payload that looks like a run of records) is
// read again, knowing its start: the frames are always the timeline's.
//
// Split works when no frame has been read yet and every input is a
// regular, uncompressed classic pcap file; otherwise it returns false, and
// the source is to be read with ReadFrame. After Split, use the Splitter,
// not ReadFrame; FileStats and Close keep working.
func (s *FileSource) Split() (*Splitter, bool) {
	if s.next != 0 || s.cur != nil {
		return nil, false
	}
	for i := range s.inputs {
		// OpenFiles looked at regular files only.
		if s.inputs[i].format != formatPcap {
			return nil, false
		}
	}
	return &Splitter{s: s}, true
}

// Splitter hands out the regions of a FileSource's timeline, in order, and
// takes them back, in the same order, to check them. One goroutine calls
// Next, one (maybe another) Check and Reread; each Region is read by one
// goroutine, any, in between.
type Splitter struct {
	s *FileSource

	// Next's
	cur *splitFile // the file being cut, nil between files
	pos int64      // where the next region begins

	// Check's: where the previous region of the file being checked ended,
	// or -1 when it ended the file.
	checked *splitFile
	end     int64
}

// splitFile is one input being split: the file, shared by its regions,
// and closed when the last of them is checked.
type splitFile struct {
	in   *input
	f    *os.File
	size int64
	hdr  pcapHeader
	refs atomic.Int32
}

func (sf *splitFile) release() {
	if sf.refs.Add(-1) == 0 {
		sf.f.Close()
	}
}

// Next returns the next region of the timeline, or io.EOF after the last.
// An error opening a file is the file's error, as ReadFrame returns it:
// the regions of the next file follow.
func (sp *Splitter) Next() (*Region, error) {
	s := sp.s
	for {
		if s.closed.Load() {
			return nil, errClosed()
		}
		if sp.cur == nil {
			if s.next == len(s.inputs) {
				return nil, io.EOF
			}
			in := &s.inputs[s.next]
			s.next++
			sf, err := openSplit(in)
			if err != nil {
				s.setErr(in, err)
				return nil, err
			}
			sp.cur, sp.pos = sf, 24 // the first record follows the file header
		}
		sf := sp.cur
		if sp.pos >= sf.size {
			sp.cur = nil
			sf.release()
			continue
		}
		r := &Region{sp: sp, file: sf, base: sp.pos, limit: min(sp.pos+regionSize, sf.size), start: -1}
		if r.base == 24 {
			r.start = 24
		}
		sf.refs.Add(1) // released by Check
		sp.pos = r.limit
		return r, nil
	}
}

// openSplit opens an input for splitting and reads its file header.
func openSplit(in *input) (*splitFile, error) {
	f, err := os.Open(in.name)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	st, err := f.Stat()
	var hdr pcapHeader
	if err == nil {
		hdr, err = readPcapHeader(bufio.NewReaderSize(f, sniffBufferSize))
	}
	if err != nil {
		f.Close()
		return nil, fileError(in.name, err)
	}
	sf := &splitFile{in: in, f: f, size: st.Size(), hdr: hdr}
	sf.refs.Store(1) // Next's
	return sf, nil
}

// Region is a span of one file and the frames whose records start in it.
// It is read by one goroutine, with ReadFrame until io.EOF, then Close;
// Check then says whether its frames are the timeline's.
type Region struct {
	// Regions made one after the other sit side by side, and are read
	// at the same time on different cores, each writing its own for
	// every frame: the padding keeps them off each other's cache lines.
	_           cacheLinePad
	sp          *Splitter
	file        *splitFile
	base, limit int64 // the span
	start       int64 // where its first record starts; -1 until found
	off         int64 // where its next record starts
	end         int64 // where the record after its last starts, once read
	frames      int   // delivered
	bytes       uint64
	first       time.Time // of its first frame
	err         error     // what ended the file in the region, raw
	done        bool

	*regionBuf // the file from base on
	_          cacheLinePad
}

// regionBuf holds a region's bytes; regions reuse them.
type regionBuf struct{ buf []byte }

var regionBufs = sync.Pool{New: func() any {
	return &regionBuf{buf: make([]byte, 0, int(regionSize)+16+MaxSnaplen)}
}}

// ReadFrame fills f with the region's next frame; f.Data is valid until
// Close. It returns io.EOF after the last. An error ending the file (a
// record cut short, a damaged record) also ends the region; Check reports
// it, once it knows the region's frames are the timeline's.
func (r *Region) ReadFrame(f *Frame) error {
	if r.done {
		return io.EOF
	}
	if r.regionBuf == nil {
		r.regionBuf = regionBufs.Get().(*regionBuf)
		r.buf = r.buf[:0]
		if r.start < 0 && !r.findStart() {
			r.done = true // Check will have it read again
			return io.EOF
		}
		r.off = r.start
	}
	if r.off >= r.limit {
		r.end, r.done = r.off, true
		return io.EOF
	}
	for {
		var b []byte // the file read from r.off on
		if p := int(r.off - r.base); p < len(r.buf) {
			b = r.buf[p:]
		}
		n, ok, err := r.file.hdr.frame(f, b)
		if ok {
			r.off += int64(n)
			break
		}
		if err == nil {
			err = r.read(r.off + int64(n))
		}
		if err != nil {
			return r.stop(err)
		}
	}
	if r.frames == 0 {
		r.first = f.Timestamp
	}
	r.frames++
	r.bytes += uint64(f.CaptureLength)
	return nil
}

func (r *Region) stop(err error) error {
	r.err, r.done = err, true
	return io.EOF
}

// read makes buf hold the file up to offset to, reading up to a chunk
// more than it lacks. A file that ends before to is cut short.
func (r *Region) read(to int64) error {
	have := r.base + int64(len(r.buf))
	if to <= have {
		return nil
	}
	if r.sp.s.closed.Load() {
		return os.ErrClosed
	}
	if to > r.file.size {
		return io.ErrUnexpectedEOF
	}
	want := min(max(to, have+readChunk), r.file.size, r.limit+16+MaxSnaplen) - r.base
	if int(want) > cap(r.buf) {
		r.buf = append(r.buf[:cap(r.buf)], make([]byte, int(want)-cap(r.buf))...)[:len(r.buf)]
	}
	n, err := r.file.f.ReadAt(r.buf[len(r.buf):want], have)
	r.buf = r.buf[:len(r.buf)+n]
	if err == io.EOF {
		err = nil
	}
	if err == nil && r.base+int64(len(r.buf)) < to {
		err = io.ErrUnexpectedEOF // the file shrank
	}
	return err
}

// resyncRecords is how many records must follow each other plausibly from
// an offset for it to be taken as a region's first record.
const resyncRecords = 8

// findStart finds where the region's first record likely starts: the first
// offset from which resyncRecords records (or all the records up to the
// end of the file) have plausible headers, one after the other, with times
// within a day of each other. It reports false when it finds none.
func (r *Region) findStart() bool {
	h := r.file.hdr
	for at := r.base; at < r.limit; at++ {
		off, n := at, 0
		var t0 int64
		for ; n < resyncRecords && off < r.file.size; n++ {
			if r.read(off+16) != nil {
				break
			}
			p := int(off - r.base)
			ts, c, wire, ok := h.record(r.buf[p : p+16])
			if !ok || wire > MaxSnaplen || (n > 0 && (ts.Unix() > t0+86400 || ts.Unix() < t0-86400)) {
				break
			}
			if n == 0 {
				t0 = ts.Unix()
			}
			off += 16 + int64(c)
		}
		if n == resyncRecords || off == r.file.size && n > 0 {
			r.start = at
			return true
		}
	}
	return false
}

// Close gives back the region's buffer; its frames are invalid from then
// on.
func (r *Region) Close() error {
	if r.regionBuf != nil {
		regionBufs.Put(r.regionBuf)
		r.regionBuf = nil
	}
	r.done = true
	return nil
}

// Verdict is what Check says of a region.
type Verdict int

const (
	// Accept: the region's frames are the timeline's.
	Accept Verdict = iota
	// Reread: the region guessed its start wrong; read it again with
	// Reread and check that instead.
	Reread
	// Skip: the file ended before the region; it has no frames.
	Skip
)

// Check takes the regions back in the order Next gave them, once read and
// closed, and says whether a region's frames are the timeline's. For a
// region it accepts, it counts the frames in FileStats and returns the
// error that ended the file there, worded as ReadFrame words it (wrapping
// ErrTruncated for a file cut short). Every region must be checked, also
// after a failure, so that its file is closed.
func (sp *Splitter) Check(r *Region) (Verdict, error) {
	sf := r.file
	if sf != sp.checked {
		sp.checked, sp.end = sf, 24
	}
	switch {
	case sp.end < 0:
		sf.release()
		return Skip, nil
	case r.start != sp.end:
		return Reread, nil
	}
	sf.release()
	in, s := sf.in, sp.s
	if n := uint64(r.frames); in.frames.Add(n) == n && n > 0 {
		s.setFirst(in, r.first)
	}
	in.bytes.Add(r.bytes)
	sp.end = r.end
	if r.err == nil {
		return Accept, nil
	}
	sp.end = -1
	return Accept, s.endError(in, r.err)
}

// Reread returns the region r again, to be read knowing where its first
// record starts; r, which guessed wrong, is done with.
func (sp *Splitter) Reread(r *Region) *Region {
	return &Region{sp: sp, file: r.file, base: r.base, limit: r.limit, start: sp.end}
}
