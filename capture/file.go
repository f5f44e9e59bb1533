package capture

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// ErrNotCapture is wrapped by the error for an input that is neither a
// classic pcap nor a pcapng file (plain or gzip-compressed).
var ErrNotCapture = errors.New("not a pcap or pcapng file")

const (
	// readBufferSize is the buffer between a file and pcapgo. pcapgo reads
	// each record with several small reads; through bufio's 4 KiB default
	// a file reads several times slower (5x in BenchmarkFileSource).
	readBufferSize = 1 << 20

	// sniffBufferSize is enough to check a file's header up front without
	// allocating the full read buffer for every file of a long list.
	sniffBufferSize = 4096

	// readBudget is the most one ReadFrame may pull from a file. pcapgo
	// trusts lengths from the file: a bogus pcapng block length makes it
	// read (and keep) up to 4 GiB, which a pipe or a gzip bomb can supply,
	// and a bit flip in a large file can claim. The budget is far above a
	// real record plus the metadata blocks before it and the read-ahead of
	// the buffer, and keeps what one record can cost to a few tens of MiB.
	readBudget = 16 << 20
)

// errBudget is what a read returns once a record has used its readBudget.
var errBudget = fmt.Errorf("a record is longer than %d MiB", readBudget>>20)

// FileSource is a Source that reads capture files one after the other as a
// single timeline, in the order given, as OpenFiles describes.
//
// ReadFrame is for one goroutine at a time. Close and FileStats may be
// called from any goroutine, also while ReadFrame runs: Close then closes
// the file being read and ReadFrame returns an error wrapping os.ErrClosed
// (a read blocked on standard input, which is not ours to close, returns
// only when its writer writes or goes away).
type FileSource struct {
	stdin  io.Reader
	inputs []input     // one per path, in order
	next   int         // index in inputs of the next to open
	cur    *fileReader // the input being read (inputs[next-1]), nil between inputs

	closed atomic.Bool
	mu     sync.Mutex // guards file and every input's err and first; never taken per frame
	file   *os.File   // the file being read, for Close to close
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
	first         time.Time // guarded by FileSource.mu
	err           error
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
	// Err is why the input ended early (wrapping ErrTruncated for a file
	// cut mid-record), or nil if it was read to its end or not reached yet.
	Err error
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
// ReadFrame returns io.EOF after the last frame of the last file. Any other
// error ends the current file only and names it: the next ReadFrame goes on
// with the next file. An error that wraps ErrTruncated means the file was
// cut mid-record (the frames before the cut were delivered, a warning is
// the usual answer); any other error is a damaged or unreadable file, which
// the caller may treat as fatal or also warn about and go on. FileStats
// keeps each file's error for a summary at the end.
func OpenFiles(paths []string, stdin io.Reader) (*FileSource, error) {
	if len(paths) == 0 {
		return nil, errors.New("capture: no capture file given")
	}
	s := &FileSource{stdin: stdin, inputs: make([]input, len(paths))}
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
			return errClosed()
		}
		if s.cur == nil {
			if s.next == len(s.inputs) {
				return io.EOF
			}
			in := &s.inputs[s.next]
			s.next++
			fr, err := s.open(in.name)
			if err != nil {
				s.setErr(in, err)
				return err
			}
			if !s.track(fr.file) {
				return errClosed()
			}
			s.cur = fr
		}
		in := &s.inputs[s.next-1]
		err := s.cur.read(f)
		if err == nil {
			if in.frames.Load() == 0 { // First is set before Frames says there is one
				s.setFirst(in, f.Timestamp)
			}
			in.frames.Add(1)
			in.bytes.Add(uint64(f.CaptureLength))
			return nil
		}
		s.track(nil)
		s.cur = nil
		if err == io.EOF {
			continue
		}
		return s.endError(in, err)
	}
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
	s.setErr(in, err)
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

func (s *FileSource) setErr(in *input, err error) {
	s.mu.Lock()
	in.err = err
	s.mu.Unlock()
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
// far as the timeline got: for progress, and a summary at the end.
func (s *FileSource) FileStats() []FileStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FileStats, len(s.inputs))
	for i := range s.inputs {
		in := &s.inputs[i]
		st := FileStats{Name: in.name, Frames: in.frames.Load(), Bytes: in.bytes.Load(), First: in.first, Err: in.err}
		switch in.format {
		case formatPcap:
			st.Size = uint64(in.size)
			if st.Frames > 0 {
				st.Offset = pcapFileHeader + pcapRecordHeader*st.Frames + st.Bytes
			}
		case formatPcapNG:
			// An estimate (options and padding vary): never past the end.
			st.Size, st.Offset = uint64(in.size), min(pcapngRecord*st.Frames+st.Bytes, uint64(in.size))
		}
		out[i] = st
	}
	return out
}

func (s *FileSource) open(name string) (*fileReader, error) {
	if name != "-" {
		return openFile(name, readBufferSize)
	}
	fr, err := newFileReader(s.stdin, readBufferSize)
	if err != nil {
		return nil, fileError(name, err)
	}
	return fr, nil
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

// fileReader reads the frames of one input.
type fileReader struct {
	file       *os.File // nil for stdin, which is not ours to close
	budget     *budgetReader
	compressed bool

	// rec reads the records of a classic pcap; ng is set for pcapng.
	rec *pcapRecords
	ng  *pcapgo.NgReader
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

// newFileReader recognises the format of r and reads its file header.
func newFileReader(r io.Reader, bufSize int) (*fileReader, error) {
	// The budget sits right under the buffer pcapgo reads from (pcapgo
	// keeps a *bufio.Reader it is given rather than wrapping it again).
	budget := &budgetReader{r: r, left: readBudget}
	br := bufio.NewReaderSize(budget, bufSize)
	magic, _ := br.Peek(2)
	compressed := bytes.Equal(magic, []byte{0x1f, 0x8b})
	if compressed {
		// The budget is for what the compressed bytes expand to.
		budget.left = math.MaxInt64
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, headerError("gzip", err)
		}
		budget = &budgetReader{r: zr, left: readBudget}
		br = bufio.NewReaderSize(budget, bufSize)
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

	fr := &fileReader{budget: budget, compressed: compressed}
	switch {
	case bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}):
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{
			// Without it, pcapgo silently drops the packets of every
			// interface whose link type differs from the first one's.
			WantMixedLinkType: true,
			// As the pcapng specification asks, rather than stopping at
			// a section of a version we cannot read.
			SkipUnknownVersion: true,
		})
		if err == io.EOF {
			// pcapgo skipped every section, as being of a version it
			// cannot read, and reached the end of the file.
			return nil, fmt.Errorf("pcapng: no section of a supported version: %w", pcapgo.ErrNgVersionMismatch)
		}
		if err != nil {
			return nil, headerError("pcapng", err)
		}
		if err := checkNgLinkTypes(ng); err != nil {
			return nil, err
		}
		fr.ng = ng
	case isPcapMagic(magic):
		hdr, err := readPcapHeader(br)
		if err != nil {
			return nil, err
		}
		fr.rec = newPcapRecords(br, budget, hdr)
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

// checkNgLinkTypes refuses a pcapng file none of whose interfaces, as far
// as the reader has seen them, has a link type we decode. A file that mixes
// decodable and other interfaces is read; the other frames are counted as
// dropped by the decoder.
func checkNgLinkTypes(ng *pcapgo.NgReader) error {
	n := ng.NInterfaces()
	for i := range n {
		if ifc, err := ng.Interface(i); err == nil && SupportedLinkType(ifc.LinkType) {
			return nil
		}
	}
	if n == 0 {
		return nil
	}
	return unsupportedLinkType(ng.LinkType())
}

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

// headerError explains an error pcapgo returned while reading a file header.
func headerError(format string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s file header is truncated", format)
	}
	return fmt.Errorf("%s file header: %w", format, err)
}

// read fills f with the next frame. Errors are pcapgo's: io.EOF at the end,
// io.ErrUnexpectedEOF for a record cut short.
func (fr *fileReader) read(f *Frame) error {
	fr.budget.left = readBudget
	if fr.rec != nil {
		return fr.rec.next(f)
	}
	data, ci, err := fr.ng.ZeroCopyReadPacketData()
	if err != nil {
		return err
	}
	// pcapgo checks a classic pcap's record lengths, not pcapng's.
	if len(data) > MaxSnaplen {
		return fmt.Errorf("record of %d bytes is longer than %d", len(data), MaxSnaplen)
	}
	iface, err := fr.ng.Interface(ci.InterfaceIndex)
	if err != nil {
		return err
	}
	*f = Frame{Data: data, Timestamp: ci.Timestamp, CaptureLength: len(data),
		Length: max(ci.Length, len(data)), LinkType: iface.LinkType, Interface: ci.InterfaceIndex}
	return nil
}

// budgetReader fails once left bytes have been read; read resets left
// before every record.
type budgetReader struct {
	r    io.Reader
	left int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBudget
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
