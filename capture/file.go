package capture

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// ErrNotCapture is wrapped by the error for an input that is neither a
// classic pcap nor a pcapng file (plain or gzip-compressed).
var ErrNotCapture = errors.New("not a pcap or pcapng file")

const (
	// readBufferSize is the buffer that reads a file's header, and the
	// first records after it.
	readBufferSize = 1 << 20

	// sniffBufferSize is enough to check a file's header up front without
	// allocating the full read buffer for every file of a long list.
	sniffBufferSize = 4096
)

// FileSource is a Source that reads capture files one after the other as a
// single timeline, in the order given, as OpenFiles describes.
//
// ReadFrame is for one goroutine at a time. Close and FileStats may be
// called from any goroutine, also while ReadFrame runs: Close then closes
// the file being read and ReadFrame returns an error wrapping os.ErrClosed,
// also while it waits for a named pipe's writer or for standard input
// (which is not ours to close: the read is left to end by itself).
type FileSource struct {
	stdin  io.Reader
	inputs []input     // one per path, in order
	next   int         // index in inputs of the next to open
	cur    *fileReader // the input being read (inputs[next-1]), nil between inputs
	// pending is the second error of an input that ended with two, for
	// the next ReadFrame to return.
	pending error

	closed atomic.Bool
	stop   chan struct{} // closed by Close
	mu     sync.Mutex    // guards file and the inputs' fields that are not atomic; never taken per frame
	file   *os.File      // the file being read, for Close to close
}

// input is one path of the timeline and what was read from it.
type input struct {
	name string
	// format and size are what OpenFiles found of a regular file;
	// standard input and pipes, which it does not look at, are
	// formatUnknown.
	format        inputFormat
	size          int64
	frames, bytes atomic.Uint64
	// damaged and skipped count the damaged stretches skipped and their
	// bytes.
	damaged, skipped atomic.Uint64
	first            time.Time // guarded by FileSource.mu, as the rest
	err              error
	// undecoded counts the frames of link types the decoder does not
	// read, undecodedTypes lists those, when the input ends.
	undecoded      uint64
	undecodedTypes []layers.LinkType
}

// inputFormat is the format of an input as stored.
type inputFormat uint8

const (
	formatUnknown inputFormat = iota
	formatPcap
	formatPcapNG
	formatGzip
)

// Per-frame overhead of a capture file, to turn the captured bytes of the
// frames read into a position in the file: exact for classic pcap (a
// 24-byte file header, a 16-byte record header), close for pcapng (an
// Enhanced Packet Block's 32 bytes and padding; options and other blocks
// are not counted).
const (
	pcapFileHeader   = 24
	pcapRecordHeader = 16
	pcapngRecord     = 34
)

// FileStats counts what a FileSource read from one input.
type FileStats struct {
	// Name is the path as given to OpenFiles; "-" is standard input.
	Name string
	// Frames and Bytes count the frames delivered and their captured
	// bytes (the sum of CaptureLength).
	Frames uint64
	Bytes  uint64
	// First is the time of the first frame delivered; zero before it.
	First time.Time
	// Size is the input's size on disk as OpenFiles found it, and Offset
	// how far into it the frames delivered reach (0 before the first):
	// exact for classic pcap, close for pcapng, whose blocks other than
	// the frames' are not counted. Both are 0 where the size says nothing
	// of what is left to read: a compressed file, standard input, a pipe.
	Size, Offset uint64
	// Err is why the input ended early or could not be seen, an
	// *InputError: wrapping ErrTruncated for a file cut mid-record,
	// ErrUnsupportedLinkType for a pcapng file none of whose interfaces
	// the decoder reads (cut or not). It is nil if the input was read to
	// its end or not reached yet.
	Err error
	// Damaged counts the damaged stretches skipped, Skipped their bytes.
	Damaged, Skipped uint64
	// Undecoded counts the frames of interfaces whose link type the
	// decoder does not read (pcapng); UndecodedLinkTypes lists those link
	// types, the first few, in the order declared. LinkTypeNames names
	// them as errors do.
	Undecoded          uint64
	UndecodedLinkTypes []layers.LinkType
}

var _ Source = (*FileSource)(nil)

// OpenFiles returns a Source that reads the capture files at paths as one
// timeline, in the order given; the path "-" is stdin (at most once).
//
// Formats are recognised by their content, never by their name: classic
// pcap in either byte order with micro- or nanosecond timestamps, pcapng
// (any number of sections and interfaces, each interface with its own link
// type), and either of them gzip-compressed.
//
// OpenFiles checks every named file up front, so that a missing file or one
// that is not a capture fails before the first frame: it opens it, reads
// its file header and closes it again. Standard input, and named pipes
// such as bash's <(zcat a.pcap.gz), whose bytes can be read only once, are
// checked when the timeline reaches them. Files are opened one at a time
// as they are read.
//
// Files are read record by record, each checked before it is believed. A
// damaged record or block (lengths that contradict each other or the
// format, a block type pcapng does not have) is skipped to the next one
// that reads well: a pcapng block of a known type whose lengths at both
// ends agree, a run of classic pcap records whose headers are sane.
//
// ReadFrame returns io.EOF after the last frame of the last file. Its other
// errors are *InputError values that name the file, and reading goes on
// after them: an error that wraps ErrDamaged is a damaged stretch, skipped
// (the next ReadFrame reads what follows it); one that wraps ErrTruncated
// is a file cut mid-record (the frames before the cut were delivered, the
// next ReadFrame goes on with the next file, and a warning is the usual
// answer); any other ends a file that could not be read, or none of whose
// pcapng interfaces has a link type the decoder reads, and the next
// ReadFrame goes on with the next file. Such a pcapng file cut short gives
// both errors, the cut first. A file damaged again and again is reported a
// few times, then counted. FileStats keeps each file's counts and error
// for a summary at the end. Only a read that Close interrupted returns an
// error wrapping os.ErrClosed, and no InputError.
func OpenFiles(paths []string, stdin io.Reader) (*FileSource, error) {
	if len(paths) == 0 {
		return nil, errors.New("capture: no capture file given")
	}
	s := &FileSource{inputs: make([]input, len(paths)), stop: make(chan struct{})}
	if stdin != nil {
		s.stdin = newStopReader(stdin, s.stop)
	}
	sawStdin := false
	for i, p := range paths {
		s.inputs[i].name = p
		if p == "-" {
			if sawStdin {
				return nil, errors.New("capture: stdin (-) given more than once")
			}
			if stdin == nil {
				return nil, errors.New("capture: stdin (-) given without a reader for it")
			}
			sawStdin = true
			continue
		}
		if info, err := os.Stat(p); err == nil && !info.Mode().IsRegular() && !info.IsDir() {
			continue // a pipe or a device: sniffing would eat its header
		}
		fr, err := openFile(p, sniffBufferSize)
		if err != nil {
			return nil, err
		}
		st, err := fr.file.Stat()
		fr.file.Close()
		if err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		s.inputs[i].format, s.inputs[i].size = fr.format(), st.Size()
	}
	return s, nil
}

// ReadFrame fills f with the next frame of the timeline. f.Data is borrowed
// until the next call. See OpenFiles for the errors it returns.
func (s *FileSource) ReadFrame(f *Frame) error {
	for {
		if s.closed.Load() {
			if s.cur != nil {
				s.cur.publish()
			}
			return errClosed()
		}
		if err := s.pending; err != nil {
			s.pending = nil
			return err
		}
		if s.cur == nil {
			if s.next == len(s.inputs) {
				return io.EOF
			}
			in := &s.inputs[s.next]
			s.next++
			fr, err := s.open(in.name)
			if err != nil {
				s.track(nil)
				if s.closed.Load() {
					return errClosed()
				}
				return s.fail(in, err)
			}
			fr.in, s.cur = in, fr
		}
		fr := s.cur
		in := fr.in
		var err error
		if fr.rec != nil { // read's choice, without its call on every frame
			err = fr.rec.next(f)
		} else {
			err = fr.ng.next(f)
		}
		if err == nil {
			fr.frames++
			fr.bytes += uint64(f.CaptureLength)
			if fr.frames%publishEvery == 0 || fr.frames == 1 {
				if fr.frames == 1 && in.frames.Load() == 0 { // First is set before Frames says there is one
					s.setFirst(in, f.Timestamp)
				}
				fr.publish()
			}
			return nil
		}
		fr.publish()
		if d := (*damage)(nil); errors.As(err, &d) {
			if err := s.damaged(in, d); err != nil {
				return err
			}
			continue
		}
		s.track(nil)
		s.cur = nil
		if err := s.end(in, fr, err); err != nil {
			return err
		}
	}
}

// end notes how input in ended: err is what its reader fr returned, io.EOF
// at a clean end. It returns the error to report, if any. A pcapng file
// none of whose interfaces the decoder reads is an error however it ends:
// cut short, it has two, the cut and then that, kept for the next
// ReadFrame.
func (s *FileSource) end(in *input, fr *fileReader, err error) error {
	var cut error
	if err != io.EOF {
		if cut = s.endError(in, err); errors.Is(cut, os.ErrClosed) {
			return cut
		}
	}
	blind := s.finish(in, fr)
	if cut == nil {
		return blind
	}
	s.pending = blind
	return cut
}

// finish notes what the reader of input in says at its end, and returns
// the error for a pcapng file none of whose interfaces the decoder reads.
func (s *FileSource) finish(in *input, fr *fileReader) error {
	if fr.ng == nil {
		return nil
	}
	s.mu.Lock()
	in.undecoded, in.undecodedTypes = fr.ng.undecoded, fr.ng.undecodedTypes
	s.mu.Unlock()
	if err := fr.ng.finish(); err != nil {
		return s.fail(in, fmt.Errorf("capture: read %s: %w", displayName(in.name), err))
	}
	return nil
}

// endError words err, which ended input in after the frames it counts, as
// ReadFrame and Check return it, and keeps it for FileStats, unless it is
// a read that Close made fail.
func (s *FileSource) endError(in *input, err error) error {
	switch {
	case s.closed.Load() || errors.Is(err, os.ErrClosed):
		return errClosed()
	case errors.Is(err, io.ErrUnexpectedEOF):
		// A record cut short is the usual end of a capture that was
		// copied while still being written, or killed mid-write.
		err = fmt.Errorf("capture: %s: %w after %d packets", displayName(in.name), ErrTruncated, in.frames.Load())
	default:
		err = fmt.Errorf("capture: read %s after %d packets: %w", displayName(in.name), in.frames.Load(), err)
	}
	return s.fail(in, err)
}

// fail keeps err, which ended input in, for FileStats, and returns it as
// an InputError.
func (s *FileSource) fail(in *input, err error) error {
	err = &InputError{Name: in.name, Err: err}
	s.mu.Lock()
	in.err = err
	s.mu.Unlock()
	return err
}

func errClosed() error { return fmt.Errorf("capture: read frame: %w", os.ErrClosed) }

// track makes f the file Close closes, after closing the one before. It
// reports false, and closes f, if the source is closed.
func (s *FileSource) track(f *os.File) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		s.file.Close()
	}
	s.file = f
	if s.closed.Load() && f != nil {
		f.Close()
		s.file = nil
		return false
	}
	return true
}

func (s *FileSource) setFirst(in *input, t time.Time) {
	s.mu.Lock()
	in.first = t
	s.mu.Unlock()
}

// Close closes the file being read, if any. It is safe to call twice, and
// from another goroutine than ReadFrame's. Standard input is not closed:
// it is not ours.
func (s *FileSource) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	return nil
}

// FileStats returns the counters of every input, in the order given, as
// far as the timeline got: for progress, and a summary at the end. While
// an input is read they count its first frame, then every publishEvery
// frames of it (a frame read since is not counted yet); they are exact
// once ReadFrame has returned an error (io.EOF at the end, a damaged
// stretch, an input ended, a read interrupted by Close).
func (s *FileSource) FileStats() []FileStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FileStats, len(s.inputs))
	for i := range s.inputs {
		in := &s.inputs[i]
		st := FileStats{Name: in.name, Frames: in.frames.Load(), Bytes: in.bytes.Load(), First: in.first, Err: in.err,
			Damaged: in.damaged.Load(), Skipped: in.skipped.Load(),
			Undecoded: in.undecoded, UndecodedLinkTypes: in.undecodedTypes}
		switch in.format {
		case formatPcap:
			st.Size = uint64(in.size)
			if st.Frames > 0 {
				st.Offset = pcapFileHeader + pcapRecordHeader*st.Frames + st.Bytes + st.Skipped
			}
		case formatPcapNG:
			// An estimate (options and padding vary): never past the end.
			st.Size, st.Offset = uint64(in.size), min(pcapngRecord*st.Frames+st.Bytes+st.Skipped, uint64(in.size))
		}
		out[i] = st
	}
	return out
}

// open opens the input called name and reads its file header. The file is
// tracked before anything is read from it, so that Close stops the wait
// for a named pipe's writer.
func (s *FileSource) open(name string) (*fileReader, error) {
	r, f := s.stdin, (*os.File)(nil)
	if name != "-" {
		var err error
		if f, err = openInput(name); err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		if !s.track(f) {
			return nil, errClosed()
		}
		if err := awaitWriter(f); err != nil {
			return nil, fileError(name, err)
		}
		r = f
	}
	fr, err := newFileReader(r, readBufferSize)
	if err != nil {
		return nil, fileError(name, err)
	}
	fr.file = f
	return fr, nil
}

// stopReader reads r on a goroutine of its own, so that a read that
// blocks (standard input that no one writes to, which is not ours to
// close) returns os.ErrClosed once stop is closed. The goroutine is
// started by the first Read and serves every read after it, so that a
// read allocates nothing; it ends at stop, or at the first error, which
// every Read returns from then on. A read that stop interrupts is left
// behind, to end when r's writer writes or goes; its buffer is not used
// again. Read is for one goroutine at a time.
type stopReader struct {
	r       io.Reader
	stop    <-chan struct{}
	started bool
	err     error           // the read error that ended the goroutine
	bufs    chan []byte     // what to read into, from Read to the goroutine
	results chan readResult // buffered: an interrupted read's does not wait
}

type readResult struct {
	n   int
	err error
}

func newStopReader(r io.Reader, stop <-chan struct{}) *stopReader {
	return &stopReader{r: r, stop: stop, bufs: make(chan []byte), results: make(chan readResult, 1)}
}

func (s *stopReader) Read(p []byte) (int, error) {
	select {
	case <-s.stop:
		return 0, os.ErrClosed
	default:
	}
	if s.err != nil {
		return 0, s.err
	}
	if !s.started {
		s.started = true
		go s.serve()
	}
	select {
	case s.bufs <- p:
	case <-s.stop:
		return 0, os.ErrClosed
	}
	select {
	case r := <-s.results:
		s.err = r.err
		return r.n, r.err
	case <-s.stop:
		return 0, os.ErrClosed
	}
}

// serve reads r into the buffers Read hands it, until stop or an error.
func (s *stopReader) serve() {
	for {
		select {
		case p := <-s.bufs:
			n, err := s.r.Read(p)
			s.results <- readResult{n, err}
			if err != nil {
				return
			}
		case <-s.stop:
			return
		}
	}
}

// displayName is how errors name an input.
func displayName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

// fileError wraps an error from opening or reading the input called name.
// Errors from the operating system already name the file.
func fileError(name string, err error) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("capture: %w", err)
	}
	return fmt.Errorf("capture: read %s: %w", displayName(name), err)
}

// publishEvery is how many frames of an input ReadFrame reads between
// two updates of the input's counters, which FileStats reads from other
// goroutines: an atomic add per frame costs a few percent of the read.
const publishEvery = 8

// fileReader reads the frames of one input.
type fileReader struct {
	file       *os.File // nil for stdin, which is not ours to close
	compressed bool

	// in is the input read, for FileSource.ReadFrame: frames and bytes
	// count the frames read and their captured bytes, and in's counters
	// have had them up to the last publish. Owned by ReadFrame's goroutine.
	in                              *input
	frames, bytes                   uint64
	publishedFrames, publishedBytes uint64

	// rec reads the records of a classic pcap; ng is set for pcapng.
	rec *pcapRecords
	ng  *ngReader
}

// format is the format of the input as stored.
func (fr *fileReader) format() inputFormat {
	switch {
	case fr.compressed:
		return formatGzip
	case fr.rec != nil:
		return formatPcap
	}
	return formatPcapNG
}

func openFile(name string, bufSize int) (*fileReader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	fr, err := newFileReader(f, bufSize)
	if err != nil {
		f.Close()
		return nil, fileError(name, err)
	}
	fr.file = f
	return fr, nil
}

// newFileReader recognises the format of r and reads its file header,
// with a buffer of bufSize bytes.
func newFileReader(r io.Reader, bufSize int) (*fileReader, error) {
	br := bufio.NewReaderSize(r, bufSize)
	magic, _ := br.Peek(2)
	compressed := bytes.Equal(magic, []byte{0x1f, 0x8b})
	if compressed {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, headerError("gzip", err)
		}
		r = zr
		br = bufio.NewReaderSize(zr, bufSize)
	}

	magic, err := br.Peek(4)
	if errors.Is(err, io.ErrUnexpectedEOF) { // from gzip
		return nil, errors.New("compressed data is truncated")
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(magic) == 0 {
		return nil, fmt.Errorf("%w (file is empty)", ErrNotCapture)
	}

	// The records are read a chunk at a time, the file header's buffer
	// first; a file only sniffed has small chunks.
	chunk := min(bufSize, readChunk)
	fr := &fileReader{compressed: compressed}
	switch {
	case bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}):
		ng, err := newNgReader(newWindow(br, r, 0, chunk))
		if err != nil {
			return nil, err
		}
		fr.ng = ng
	case isPcapMagic(magic):
		hdr, err := readPcapHeader(br)
		if err != nil {
			return nil, err
		}
		fr.rec = &pcapRecords{hdr: hdr, w: newWindow(br, r, pcapFileHeader, chunk)}
	case bytes.Equal(magic, []byte{0x34, 0xcd, 0xb2, 0xa1}), bytes.Equal(magic, []byte{0xa1, 0xb2, 0xcd, 0x34}):
		return nil, errors.New("modified pcap (Kuznetzov's format) is not supported")
	default:
		return nil, ErrNotCapture
	}
	return fr, nil
}

// MaxSnaplen is libpcap's MAXIMUM_SNAPLEN: tcpdump and Wireshark refuse
// longer records, and so does the reader, whatever snap length a file
// declares. No capture or evidence file holds more of a frame.
const MaxSnaplen = 262144

// isPcapMagic reports whether b starts with the magic number of a classic
// pcap file: micro- or nanosecond timestamps, either byte order.
func isPcapMagic(b []byte) bool {
	for _, m := range [][]byte{
		{0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0xc3, 0xd4}, // microseconds LE, BE
		{0x4d, 0x3c, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d}, // nanoseconds LE, BE
	} {
		if bytes.Equal(b, m) {
			return true
		}
	}
	return false
}

// headerError explains an error met while reading a file header.
func headerError(format string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s file header is truncated", format)
	}
	return fmt.Errorf("%s file header: %w", format, err)
}

// read fills f with the next frame. Errors are io.EOF at the end,
// io.ErrUnexpectedEOF for a record cut short, a *damage for a damaged
// stretch skipped, and read errors.
func (fr *fileReader) read(f *Frame) error {
	if fr.rec != nil {
		return fr.rec.next(f)
	}
	return fr.ng.next(f)
}

// publish adds to its input's counters what fr has read since it last
// did.
func (fr *fileReader) publish() {
	if n := fr.frames - fr.publishedFrames; n > 0 {
		fr.in.frames.Add(n)
		fr.in.bytes.Add(fr.bytes - fr.publishedBytes)
		fr.publishedFrames, fr.publishedBytes = fr.frames, fr.bytes
	}
}
