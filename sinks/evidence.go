package sinks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

const (
	// pcapHeaderLen and pcapRecordLen are the sizes of a classic pcap
	// file header and record header.
	pcapHeaderLen = 24
	pcapRecordLen = 16

	// maxIDLen bounds an incident id, and so a file name, well below
	// NAME_MAX (255) with the ".pcap" suffix. detect's ids are 16 hex digits.
	maxIDLen = 64

	// evidenceBufferSize is each open file's write buffer: a few packets'
	// worth, so a write reaches the kernel every few packets without
	// MaxOpen files costing much memory. A larger frame goes straight to
	// the file.
	evidenceBufferSize = 16 << 10
)

// EvidenceConfig bounds what an Evidence keeps.
type EvidenceConfig struct {
	// Dir is where the files go, one per incident: Dir/<incident id>.pcap.
	Dir string
	// Packets is how many packets an incident's file keeps at most.
	Packets int
	// Snaplen is how many bytes of each frame are written at most
	// (1 to 262144); longer frames are cut, and keep their length on the
	// wire.
	Snaplen int
	// MaxOpen bounds the files open at once: incidents whose evidence is
	// being written. Each costs a file descriptor and a 16 KiB buffer.
	MaxOpen int
	// MaxFiles and MaxBytes bound the files this run keeps in Dir and
	// their size: to stay within them, the oldest finished files this run
	// wrote are removed. Files of earlier runs are never touched, and
	// neither are open ones: when removing finished files is not enough, a
	// new incident gets no file, and a file whose next packet does not fit
	// ends there.
	MaxFiles int
	MaxBytes int64
}

// EvidenceStats are an Evidence's counters.
type EvidenceStats struct {
	Files   uint64 `json:"files"`   // files created
	Packets uint64 `json:"packets"` // packets written to the files
	Bytes   int64  `json:"bytes"`   // bytes of the files this run keeps in Dir now
	Removed uint64 `json:"removed"` // finished files removed to stay within MaxFiles and MaxBytes
	// Refused counts incidents given no file (a bound reached, an unsafe
	// id, or after Close) and files ended early because MaxBytes could not
	// fit their next packet.
	Refused uint64 `json:"refused"`
	Errors  uint64 `json:"errors"`  // files that could not be created, written, closed or removed
	Skipped uint64 `json:"skipped"` // packets whose link type is not their file's
}

// Evidence keeps the first packets of each incident in a classic pcap file
// of its own (microsecond timestamps), which Wireshark and tcpdump open.
// It implements detect.EvidenceWriter.
//
// A file always holds whole records: the header is written when the file
// is made, the first packet at once (the alert that names the file goes
// out then), the others a buffer at a time, and what a failed write (a
// full disk) left of a record is cut off. A file that holds no packet when
// it ends is removed, and names nothing (see detect.EvidenceFile.Name).
//
// Create, the files' WritePacket and Close, and Evidence's Close are called
// from one goroutine (the detection engine's): they take no lock. Stats may
// be called from any goroutine at any time.
//
// Failures to create, write, close or remove a file are counted, and each
// kind is logged the first time only: a full disk must not flood the log
// at the rate incidents start.
type Evidence struct {
	cfg EvidenceConfig
	log *slog.Logger

	// open holds the files being written, at most MaxOpen; each knows its
	// index. finished holds the closed files this run keeps, oldest first:
	// the ones to remove first. Together they are at most MaxFiles files,
	// and byPath indexes both by path.
	open     []*evidenceFile
	finished []*evidenceFile
	byPath   map[string]*evidenceFile
	closed   bool
	logged   failure // the kinds of failure logged already

	files, packets, removed  atomic.Uint64
	refused, failed, skipped atomic.Uint64
	kept                     atomic.Int64 // bytes of open and finished files
}

var _ detect.EvidenceWriter = (*Evidence)(nil)

// failure is a kind of failure, logged once (a bit in Evidence.logged).
type failure uint8

const (
	failID failure = 1 << iota
	failCreate
	failWrite
	failClose
	failRemove
)

// NewEvidence checks cfg, and creates cfg.Dir (mode 0750) unless it exists.
// Unlike most constructors it does I/O: it proves the directory writable
// by creating and removing a file in it, so that a wrong path fails at
// start rather than at the first incident, hours later. The caller opens
// it as the user that will write the files (after dropping privileges).
// logger, which may be nil, gets the failures.
func NewEvidence(cfg EvidenceConfig, logger *slog.Logger) (*Evidence, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("sinks/evidence: no directory given")
	case cfg.Packets < 1:
		return nil, fmt.Errorf("sinks/evidence: Packets is %d: want at least 1 packet per file", cfg.Packets)
	case cfg.Snaplen < 1 || cfg.Snaplen > capture.MaxSnaplen:
		return nil, fmt.Errorf("sinks/evidence: Snaplen is %d: want 1 to %d bytes", cfg.Snaplen, capture.MaxSnaplen)
	case cfg.MaxOpen < 1:
		return nil, fmt.Errorf("sinks/evidence: MaxOpen is %d: want at least 1 file", cfg.MaxOpen)
	case cfg.MaxFiles < 1:
		return nil, fmt.Errorf("sinks/evidence: MaxFiles is %d: want at least 1 file", cfg.MaxFiles)
	}
	if least := int64(pcapHeaderLen + pcapRecordLen + cfg.Snaplen); cfg.MaxBytes < least {
		return nil, fmt.Errorf("sinks/evidence: MaxBytes is %d: want at least %d, one file with one frame of Snaplen %d bytes",
			cfg.MaxBytes, least, cfg.Snaplen)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("sinks/evidence: create directory: %w", err)
	}
	probe, err := os.CreateTemp(cfg.Dir, ".echowatch-probe-*")
	if err != nil {
		return nil, fmt.Errorf("sinks/evidence: directory not writable: %w", err)
	}
	err = probe.Close()
	if rerr := os.Remove(probe.Name()); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("sinks/evidence: directory not writable: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Evidence{
		cfg:    cfg,
		log:    logger.With("sink", "evidence", "dir", cfg.Dir),
		byPath: make(map[string]*evidenceFile),
	}, nil
}

// Create starts the file of incident id, Dir/<id>.pcap, overwriting one of
// that name: the same id is the same incident, replayed. It returns nil,
// and counts it, when the id is not a safe file name (only letters, digits,
// '-' and '_'), when MaxOpen files are open or the incident's file is open
// already, when no finished file can be removed to stay within MaxFiles and
// MaxBytes, and when the file cannot be created.
func (e *Evidence) Create(id string, link layers.LinkType) detect.EvidenceFile {
	if e.closed {
		e.refused.Add(1)
		return nil
	}
	if !safeID(id) {
		e.refused.Add(1)
		e.logOnce(failID, "unsafe incident id: no evidence file", "id", id)
		return nil
	}
	path := filepath.Join(e.cfg.Dir, id+".pcap")
	if old := e.byPath[path]; old != nil && old.file != nil {
		e.refused.Add(1)
		return nil
	}
	// A finished file of the same id still counts while room is made (it
	// may go first), and until it is removed below: a refusal leaves it
	// kept and counted.
	if len(e.open) >= e.cfg.MaxOpen {
		e.refused.Add(1)
		return nil
	}
	for len(e.open)+len(e.finished) >= e.cfg.MaxFiles {
		if !e.removeOldest() {
			e.refused.Add(1)
			return nil
		}
	}
	if !e.makeRoom(pcapHeaderLen) {
		e.refused.Add(1)
		return nil
	}
	// Whatever has the name goes first: this run's finished file, an
	// earlier run's, or something put there, which opening would follow
	// (a symbolic link), block on (a FIFO) or empty the target of (a hard
	// link). The file is then made anew (O_EXCL): nothing put there in
	// between is opened either.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.fail(failCreate, fmt.Errorf("sinks/evidence: create: %w", err))
		return nil
	}
	if old := e.byPath[path]; old != nil {
		// Gone: it no longer counts, and must not be removed later in
		// place of the new file.
		e.finished = slices.DeleteFunc(e.finished, func(f *evidenceFile) bool { return f == old })
		e.forget(old)
	}
	file, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		e.fail(failCreate, fmt.Errorf("sinks/evidence: create: %w", err))
		return nil
	}
	// Microsecond timestamps, little-endian, as appendRecordHeader writes.
	if err := pcapgo.NewWriter(file).WriteFileHeader(uint32(e.cfg.Snaplen), link); err != nil {
		file.Close()
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		e.fail(failCreate, fmt.Errorf("sinks/evidence: create: %w", err))
		return nil
	}
	f := &evidenceFile{e: e, path: path, link: link, file: file,
		buf: make([]byte, 0, evidenceBufferSize), slot: len(e.open)}
	f.size, f.disk = pcapHeaderLen, pcapHeaderLen
	e.kept.Add(pcapHeaderLen)
	e.open = append(e.open, f)
	e.byPath[path] = f
	e.files.Add(1)
	return f
}

// Close ends every open file, at the end of the run, and returns the first
// error. Create gives no more files afterwards. It is safe to call twice.
func (e *Evidence) Close() error {
	e.closed = true
	var first error
	for len(e.open) > 0 {
		if err := e.open[len(e.open)-1].finish(nil); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Stats returns the counters.
func (e *Evidence) Stats() EvidenceStats {
	return EvidenceStats{
		Files: e.files.Load(), Packets: e.packets.Load(), Bytes: e.kept.Load(),
		Removed: e.removed.Load(), Refused: e.refused.Load(), Errors: e.failed.Load(),
		Skipped: e.skipped.Load(),
	}
}

// makeRoom removes the oldest finished files until n more bytes fit within
// MaxBytes, and reports whether they do.
func (e *Evidence) makeRoom(n int64) bool {
	for e.kept.Load()+n > e.cfg.MaxBytes {
		if !e.removeOldest() {
			return false
		}
	}
	return true
}

// removeOldest removes the oldest finished file, and reports whether there
// was one and it is gone. A file that cannot be removed stays first in
// line and counted, so the bounds hold even then.
func (e *Evidence) removeOldest() bool {
	if len(e.finished) == 0 {
		return false
	}
	f := e.finished[0]
	if !e.remove(f) {
		return false
	}
	e.finished[0] = nil
	e.finished = e.finished[1:]
	e.forget(f)
	e.removed.Add(1)
	return true
}

// remove removes f's file, and reports whether it is gone. Already gone
// is fine: an analyst may have moved it away.
func (e *Evidence) remove(f *evidenceFile) bool {
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.fail(failRemove, fmt.Errorf("sinks/evidence: remove: %w", err))
		return false
	}
	return true
}

// forget stops counting finished file f as kept: it is gone, or about to
// be replaced, and its alerts name it no more.
func (e *Evidence) forget(f *evidenceFile) {
	delete(e.byPath, f.path)
	e.kept.Add(-f.size)
	f.gone = true
}

// fail counts a failure and logs it if it is the first of its kind.
func (e *Evidence) fail(kind failure, err error) {
	e.failed.Add(1)
	e.logOnce(kind, "evidence file failed; further failures of this kind are only counted", "err", err)
}

func (e *Evidence) logOnce(kind failure, msg string, args ...any) {
	if e.logged&kind != 0 {
		return
	}
	e.logged |= kind
	e.log.Warn(msg, args...)
}

// safeID reports whether id is usable as a file name as it is: non-empty,
// short, and without separators, dots or anything a shell or Windows
// would trip on.
func safeID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// evidenceFile is one incident's file. Once finished, it keeps its path
// and size only, as an entry of Evidence.finished.
type evidenceFile struct {
	e    *Evidence
	path string
	link layers.LinkType
	file *os.File // nil once finished
	buf  []byte   // whole records not yet in the file; a large frame's header last
	recs int      // records in buf
	slot int      // index in e.open while open
	n    int      // packets taken
	size int64    // bytes counted against MaxBytes: the file's, and buf's
	disk int64    // bytes in the file: its header and whole records
	gone bool     // removed (or replaced): its alerts name it no more
}

var _ detect.EvidenceFile = (*evidenceFile)(nil)

// Name returns the file's path, or "" once this run no longer keeps it:
// it ended with no packet (a full disk, a bound reached at once), or was
// removed to stay within MaxFiles and MaxBytes.
func (f *evidenceFile) Name() string {
	if f.gone {
		return ""
	}
	return f.path
}

// WritePacket appends p's frame, cut to Snaplen, with its timestamp to the
// microsecond and its length on the wire. See detect.EvidenceFile. A
// packet of another link type than the file's is skipped: a pcap file
// has one.
func (f *evidenceFile) WritePacket(p *capture.Packet) bool {
	if f.file == nil {
		return false
	}
	e := f.e
	if p.LinkType != f.link {
		e.skipped.Add(1)
		return true
	}
	caplen := min(len(p.Raw), e.cfg.Snaplen)
	n := pcapRecordLen + caplen
	if !e.makeRoom(int64(n)) {
		e.refused.Add(1)
		f.finish(nil)
		return false
	}
	// Counted before writing: whatever part of it a failed write left in
	// the file stays within the bound until it is cut off.
	f.size += int64(n)
	e.kept.Add(int64(n))
	var err error
	if len(f.buf) > 0 && len(f.buf)+n > cap(f.buf) {
		err = f.flush(nil)
	}
	if err == nil {
		f.buf = appendRecordHeader(f.buf, p.Timestamp, caplen, max(p.Length, caplen))
		f.recs++
		switch frame := p.Raw[:caplen]; {
		case n > cap(f.buf):
			err = f.flush(frame)
		case f.n == 0:
			// The file's first packet is on disk before the alert that
			// names the file goes out.
			f.buf = append(f.buf, frame...)
			err = f.flush(nil)
		default:
			f.buf = append(f.buf, frame...)
		}
	}
	if err != nil {
		f.finish(fmt.Errorf("sinks/evidence: write %s: %w", f.path, err))
		return false
	}
	f.n++
	if f.n >= e.cfg.Packets {
		f.finish(nil)
		return false
	}
	return true
}

// appendRecordHeader appends a pcap record header: microsecond timestamp,
// captured and original length, little-endian as pcapgo writes the file
// header.
func appendRecordHeader(b []byte, ts time.Time, caplen, length int) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(ts.Unix()))
	b = le.AppendUint32(b, uint32(ts.Nanosecond()/1000))
	b = le.AppendUint32(b, uint32(caplen))
	return le.AppendUint32(b, uint32(length))
}

// flush writes the buffered records, then frame, the data of the record
// whose header ends the buffer (nil when the buffer holds whole records
// only). When a write fails, the file is cut back to the whole records
// that reached it, so that it stays a capture every reader opens; one that
// cannot be cut holds nothing usable (disk 0), and finish removes it.
func (f *evidenceFile) flush(frame []byte) error {
	n, err := f.file.Write(f.buf)
	if err == nil && frame != nil {
		var m int
		m, err = f.file.Write(frame)
		n += m
	}
	written, recs := f.buf, f.recs
	f.buf, f.recs = f.buf[:0], 0
	if err == nil {
		f.disk += int64(n)
		f.e.packets.Add(uint64(recs))
		return nil
	}
	whole, recs := wholeRecords(written, n)
	f.disk += whole
	f.e.packets.Add(uint64(recs))
	if terr := f.file.Truncate(f.disk); terr != nil {
		f.disk = 0
		return errors.Join(err, terr)
	}
	return err
}

// wholeRecords returns the length and count of the whole records in the
// first n bytes written from b: records that b holds or, the last, one
// whose header ends b and whose data followed it.
func wholeRecords(b []byte, n int) (int64, int) {
	end, recs := 0, 0
	for end+pcapRecordLen <= len(b) {
		next := end + pcapRecordLen + int(binary.LittleEndian.Uint32(b[end+8:]))
		if next > n {
			break
		}
		end, recs = next, recs+1
	}
	return int64(end), recs
}

// Close flushes and closes the file. It is safe to call twice.
func (f *evidenceFile) Close() { f.finish(nil) }

// finish flushes and closes f unless it is finished already, and moves it
// from the open files to the finished ones, first in line for removal
// after those finished before; a file that holds no packet is removed
// instead. werr is the write error that ends it, if any: flushing would
// only repeat it. Failures are counted and logged.
func (f *evidenceFile) finish(werr error) error {
	if f.file == nil {
		return nil
	}
	kind, err := failWrite, werr
	if err == nil && len(f.buf) > 0 {
		kind, err = failClose, f.flush(nil)
	}
	if cerr := f.file.Close(); err == nil && cerr != nil {
		kind, err = failClose, cerr
	}
	if err != nil && werr == nil {
		err = fmt.Errorf("sinks/evidence: close %s: %w", f.path, err)
	}
	f.file, f.buf = nil, nil

	e := f.e
	last := e.open[len(e.open)-1]
	e.open[f.slot], last.slot = last, f.slot
	e.open[len(e.open)-1] = nil
	e.open = e.open[:len(e.open)-1]
	// What a failed write did not leave in the file is not kept.
	e.kept.Add(f.disk - f.size)
	f.size = f.disk
	if err != nil {
		e.fail(kind, err)
	}
	if f.disk <= pcapHeaderLen {
		// No packet: no evidence. Should the file stay (it cannot be
		// removed), it stays counted, and is removed in turn.
		if e.remove(f) {
			e.forget(f)
			return err
		}
		f.gone = true
	}
	e.finished = append(e.finished, f)
	return err
}
