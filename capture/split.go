package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"
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
				return nil, s.fail(in, err)
			}
			sp.cur, sp.pos = sf, pcapFileHeader // the first record follows the file header
		}
		sf := sp.cur
		if sp.pos >= sf.size {
			sp.cur = nil
			sf.release()
			continue
		}
		r := &Region{sp: sp, file: sf, base: sp.pos, limit: min(sp.pos+regionSize, sf.size), start: -1}
		if r.base == pcapFileHeader {
			r.start = pcapFileHeader
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
	_           cpu.CacheLinePad
	sp          *Splitter
	file        *splitFile
	base, limit int64 // the span
	start       int64 // where its first record starts; -1 until found
	off         int64 // where its next record starts
	end         int64 // where the record after its last starts, once read
	frames      int   // delivered
	bytes       uint64
	first       time.Time // of its first frame
	// damages are the first damaged stretches skipped, in order, as many
	// as Check may report; moreDamaged counts those after them, and
	// moreSkipped their bytes.
	damages                  []*damage
	moreDamaged, moreSkipped uint64
	err                      error // what ended the file in the region, raw
	done                     bool

	*regionBuf // the file from base on, and a window to skip damage with
	_          cpu.CacheLinePad
}

// regionBuf holds a region's bytes, and the window that skips damage,
// reading the file on from a damaged record, past the region's span if
// need be; regions reuse them.
type regionBuf struct {
	buf     []byte
	skipper window           // holds no file (r is nil) in the pool
	section io.SectionReader // what skipper reads
}

var regionBufs = sync.Pool{New: func() any {
	return &regionBuf{buf: make([]byte, 0, int(regionSize)+16+MaxSnaplen)}
}}

// ReadFrame fills f with the region's next frame; f.Data is valid until
// Close. It returns io.EOF after the last. A damaged record is skipped to
// the next offset from which the records read plausibly, as ReadFrame of
// the FileSource does, also when that is past the region's span (the
// region's frames then end there); Check reports it. An error ending the
// file (a record cut short with nothing readable after it, a failed read)
// also ends the region; Check reports it, once it knows the region's
// frames are the timeline's.
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
	for {
		if r.off >= r.limit {
			r.end, r.done = r.off, true
			return io.EOF
		}
		var b []byte // the file read from r.off on
		if p := int(r.off - r.base); p < len(r.buf) {
			b = r.buf[p:]
		}
		n, ok, why := r.file.hdr.frame(f, b)
		if ok {
			r.off += int64(n)
			break
		}
		if why == "" {
			err := r.read(r.off + int64(n))
			if err == nil {
				continue
			}
			if err != io.ErrUnexpectedEOF {
				return r.stop(err)
			}
		}
		if err := r.skip(n, why); err != nil {
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

// skip skips the damaged record at r.off, as pcapHeader.skip does (reading
// the file on from it, beyond the region if need be), and notes the
// damage: the first few stretches for Check to report, a count of the
// others.
func (r *Region) skip(n int, why string) error {
	if r.sp.s.closed.Load() {
		return os.ErrClosed
	}
	w := r.skipWindow()
	d, err := r.file.hdr.skip(w, n, why)
	if err != nil {
		return err
	}
	r.off = w.pos()
	if len(r.damages) < maxDamageReports+1 {
		r.damages = append(r.damages, &d)
	} else {
		r.moreDamaged++
		r.moreSkipped += uint64(d.skipped)
	}
	return nil
}

// skipWindow returns the window to skip damage at r.off with: the one the
// region skipped damage with before, if it holds r.off, else the region's
// window filled afresh from there. Damage stretch after stretch costs
// neither a buffer nor a reading of the file each.
func (r *Region) skipWindow() *window {
	w := &r.skipper
	if w.r == nil || r.off < w.pos() || r.off > w.base+int64(w.end) {
		r.section = *io.NewSectionReader(r.file.f, r.off, r.file.size-r.off)
		w.reset(&r.section, r.off)
	} else {
		w.off = int(r.off - w.base)
	}
	return w
}

func (r *Region) stop(err error) error {
	r.err, r.done = err, true
	return io.EOF
}

// read makes buf hold the file up to offset to, reading up to a chunk
// more than it lacks (not much past the region's span). A file that ends
// before to is cut short.
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
	want := min(max(to, min(have+readChunk, r.limit+16+MaxSnaplen)), r.file.size) - r.base
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

// findStart finds where the region's first record likely starts: the first
// offset in its span from which the records read plausibly (see
// pcapHeader.plausible). It reports false when it finds none.
func (r *Region) findStart() bool {
	for at := r.base; at < r.limit; at++ {
		for {
			var b []byte
			if p := int(at - r.base); p < len(r.buf) {
				b = r.buf[p:]
			}
			ok, need := r.file.hdr.plausible(b, r.base+int64(len(r.buf)) == r.file.size)
			if need == 0 {
				if ok {
					r.start = at
					return true
				}
				break
			}
			if r.read(min(at+int64(need), r.file.size)) != nil {
				return false // closed, or a failed read
			}
		}
	}
	return false
}

// Start returns where the region's first record starts in its file, -1
// until ReadFrame has found it. Only the region's reader may call it.
func (r *Region) Start() int64 { return r.start }

// Follows says, before the region r is read to its end, what Check will
// say of it, given where its reader found its first record (Start): its
// frames so far can be taken as the timeline's (Accept) once the region
// before it was checked. It changes nothing.
func (sp *Splitter) Follows(r *Region, start int64) Verdict {
	end := sp.end
	if r.file != sp.checked {
		end = pcapFileHeader
	}
	switch {
	case end < 0:
		return Skip
	case start != end:
		return Reread
	}
	return Accept
}

// Close gives back the region's buffer; its frames are invalid from then
// on.
func (r *Region) Close() error {
	if r.regionBuf != nil {
		r.skipper.reset(nil, 0)
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
// errors ReadFrame would have returned for them, in order, joined
// (errors.Join): the damaged stretches skipped (the first few of a file),
// and what ended the file there (wrapping ErrTruncated for a file cut
// short). Every region must be checked, also after a failure, so that its
// file is closed.
func (sp *Splitter) Check(r *Region) (Verdict, error) {
	sf := r.file
	v := sp.Follows(r, r.start)
	if sf != sp.checked {
		sp.checked, sp.end = sf, pcapFileHeader
	}
	switch v {
	case Skip:
		sf.release()
		return Skip, nil
	case Reread:
		return Reread, nil
	}
	sf.release()
	in, s := sf.in, sp.s
	if n := uint64(r.frames); in.frames.Add(n) == n && n > 0 {
		s.setFirst(in, r.first)
	}
	in.bytes.Add(r.bytes)
	sp.end = r.end
	var errs []error
	for _, d := range r.damages {
		if err := s.damaged(in, d); err != nil {
			errs = append(errs, err)
		}
	}
	// Past what the region kept, the file has had its reports.
	in.damaged.Add(r.moreDamaged)
	in.skipped.Add(r.moreSkipped)
	if r.err != nil {
		sp.end = -1
		errs = append(errs, s.endError(in, r.err))
	}
	return Accept, errors.Join(errs...)
}

// Reread returns the region r again, to be read knowing where its first
// record starts; r, which guessed wrong, is done with.
func (sp *Splitter) Reread(r *Region) *Region {
	return &Region{sp: sp, file: r.file, base: r.base, limit: r.limit, start: sp.end}
}
