package capture

import (
	"cmp"
	"errors"
	"io"
	"slices"
	"time"
)

// MergedFiles is a Source that reads several capture files as one timeline
// in time order, as mergecap does: each file is read in its own order by a
// FileSource of its own, and the next frame is always the earliest of the
// files' next frames; frames of equal times come in the order the files
// were given. Files that do not overlap in time come one after the other,
// as OpenFiles reads them.
//
// Memory is one reader per open file, whatever the files' sizes. A regular
// file is opened when the timeline reaches the time of its first frame
// (MergeFiles reads it up front), and closed at its end, so that a long
// series of consecutive files (tcpdump -C, -G) holds one or two open at a
// time; standard input, pipes and files whose first frame could not be
// read up front are opened at the start.
//
// ReadFrame is for one goroutine at a time; Close and FileStats may be
// called from any goroutine, as FileSource's.
type MergedFiles struct {
	files []*FileSource // one per path, in the order given
	// heads are the files' next frames, each borrowed from its file until
	// that file's next ReadFrame: a file is read again only once its head
	// has been delivered and the caller has come back for another frame,
	// so holding one frame per file needs no copy.
	heads []Frame
	// ready are the files that have a head, as a binary heap, earliest
	// (time, file index) on top.
	ready []int
	// waiting are the regular files not opened yet, by the time of their
	// first frame then index; next is the first of them still waiting.
	waiting []int
	firsts  []time.Time
	next    int
	// reads are the files to read a head from before the next frame can
	// be chosen (the one whose head went last, files that join), read in
	// order from reads[r] on.
	reads []int
	r     int
}

var _ Source = (*MergedFiles)(nil)

// MergeFiles returns a MergedFiles that reads the capture files at paths
// as one timeline in time order; the path "-" is stdin (at most once).
// Each file is checked, and read, as OpenFiles does with one path: a file
// that is missing or not a capture fails here; errors while reading are
// *InputError values naming the file, after which the other files, and
// the rest of that one, are still read.
func MergeFiles(paths []string, stdin io.Reader) (*MergedFiles, error) {
	if len(paths) == 0 {
		return nil, errors.New("capture: no capture file given")
	}
	if n := countStdin(paths); n > 1 {
		return nil, errors.New("capture: stdin (-) given more than once")
	}
	k := len(paths)
	m := &MergedFiles{files: make([]*FileSource, 0, k), heads: make([]Frame, k), firsts: make([]time.Time, k),
		ready: make([]int, 0, k), reads: make([]int, 0, k)}
	for _, p := range paths {
		var in io.Reader
		if p == "-" {
			in = stdin
		}
		fs, err := OpenFiles([]string{p}, in)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.files = append(m.files, fs)
	}
	for i, fs := range m.files {
		if t, ok := firstFrameTime(&fs.inputs[0]); ok {
			m.firsts[i] = t
			m.waiting = append(m.waiting, i)
		} else {
			m.reads = append(m.reads, i)
		}
	}
	slices.SortFunc(m.waiting, func(a, b int) int {
		return cmp.Or(m.firsts[a].Compare(m.firsts[b]), cmp.Compare(a, b))
	})
	return m, nil
}

func countStdin(paths []string) int {
	n := 0
	for _, p := range paths {
		if p == "-" {
			n++
		}
	}
	return n
}

// firstFrameTime returns the time of the first frame of in, when in is a
// regular file whose first frame reads well. It reads the file as its
// FileSource will, so that the frame is the one the timeline gets first.
func firstFrameTime(in *input) (time.Time, bool) {
	if in.format == formatUnknown { // standard input, a pipe: read once only
		return time.Time{}, false
	}
	fr, err := openFile(in.name, sniffBufferSize)
	if err != nil {
		return time.Time{}, false
	}
	defer fr.file.Close()
	var f Frame
	if fr.read(&f) != nil {
		return time.Time{}, false
	}
	return f.Timestamp, true
}

// ReadFrame fills f with the earliest of the files' next frames. f.Data is
// borrowed until the next call. It returns io.EOF once every file has
// ended. Its errors are those of the files' FileSources, which name the
// file: after an *InputError the next ReadFrame goes on, with the rest of
// that file and with the others.
func (m *MergedFiles) ReadFrame(f *Frame) error {
	for {
		for ; m.r < len(m.reads); m.r++ {
			i := m.reads[m.r]
			switch err := m.files[i].ReadFrame(&m.heads[i]); err {
			case nil:
				m.push(i)
			case io.EOF:
			default:
				return err // file i is read again on the next call
			}
		}
		m.reads, m.r = m.reads[:0], 0
		// A file whose first frame may come before the earliest head
		// joins before that head goes.
		if m.next < len(m.waiting) {
			j := m.waiting[m.next]
			if len(m.ready) == 0 || m.before(j, m.firsts[j], m.ready[0]) {
				m.next++
				m.reads = append(m.reads, j)
				continue
			}
		}
		if len(m.ready) == 0 {
			return io.EOF
		}
		i := m.pop()
		*f = m.heads[i]
		m.reads = append(m.reads, i)
		return nil
	}
}

// before reports whether a frame of file a at time t comes before the head
// of file b: earlier, or as early and from a file given before b.
func (m *MergedFiles) before(a int, t time.Time, b int) bool {
	if c := t.Compare(m.heads[b].Timestamp); c != 0 {
		return c < 0
	}
	return a < b
}

func (m *MergedFiles) less(a, b int) bool { return m.before(a, m.heads[a].Timestamp, b) }

// push adds file i, which has a head, to the heap.
func (m *MergedFiles) push(i int) {
	h := append(m.ready, i)
	for c := len(h) - 1; c > 0; {
		p := (c - 1) / 2
		if !m.less(h[c], h[p]) {
			break
		}
		h[c], h[p] = h[p], h[c]
		c = p
	}
	m.ready = h
}

// pop removes the file with the earliest head from the heap and returns it.
func (m *MergedFiles) pop() int {
	h := m.ready
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for p := 0; ; {
		c := 2*p + 1
		if c >= n {
			break
		}
		if c+1 < n && m.less(h[c+1], h[c]) {
			c++
		}
		if !m.less(h[c], h[p]) {
			break
		}
		h[c], h[p] = h[p], h[c]
		p = c
	}
	m.ready = h
	return top
}

// Close closes every file. It is safe to call twice, and from another
// goroutine than ReadFrame's.
func (m *MergedFiles) Close() error {
	var errs []error
	for _, fs := range m.files {
		errs = append(errs, fs.Close())
	}
	return errors.Join(errs...)
}

// FileStats returns the counters of every file, in the order given, as
// FileSource.FileStats does.
func (m *MergedFiles) FileStats() []FileStats {
	out := make([]FileStats, 0, len(m.files))
	for _, fs := range m.files {
		out = append(out, fs.FileStats()...)
	}
	return out
}
