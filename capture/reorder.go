package capture

import (
	"math/bits"
	"time"
)

// reorder puts the frames of telemetry in time order before they go on. A
// flow record arrives after its flow ended, stamped with the time its
// packets were seen (see netflowReader.when); samples and records of many
// datagrams interleave. The frames wait in a bounded heap and leave in
// time order once the release clock (the latest arrival less the hold-back)
// has passed them, when the heap is full (the oldest first), or at the end
// of the input. Ties leave in arrival order, so a replay is deterministic.
//
// Time never runs backward in what leaves: a frame that comes behind the
// release clock (live, a record older than the hold-back) is put at it,
// and one behind the frame that left last (after a full heap let frames go
// early) at that frame's time.
type reorder struct {
	slots []heldFrame
	free  []int32
	h     frameHeap
	seq   uint64
	// hold is the hold-back; below 0, frames wait for the end of the
	// input or a full heap (a capture file replayed).
	hold    time.Duration
	release int64 // Unix ns: frames at or before it may leave
	// out is where the frame that left last keeps its bytes; last is its
	// time, before which none leaves.
	out  [heldBytes]byte
	last int64
	// late counts the frames put at a later time than their own: behind
	// a hold-back above 0, or behind the frame that left last.
	late uint64
}

// heldBytes is how much of a frame waits: an sFlow sample's header is
// usually 128 bytes; a longer one is cut, its wire Length kept.
const heldBytes = 256

type heldFrame struct {
	f   Frame // Data nil: the bytes are in b
	n   int
	b   [heldBytes]byte
	at  int64
	seq uint64
	// A flow record being spread over its duration (see pieceWidth): step
	// is the time between its packets, left the packets and bytes still
	// to deliver, the first of them at next; the next piece holds count
	// packets and leaves at at. left is 0 for a frame that leaves whole.
	step, next      int64
	left, leftBytes uint64
	count           uint64
}

// A flow record says how many packets a flow had between its first and
// its last; replayed, where the whole input waits (hold below 0), its
// packets can be put back where they fell rather than all at its end, so
// that a rate over a window sees the flow as it ran. The packets are taken
// as evenly spaced from the first to the last, which is exact for the
// first and the last (the record says when they were) and the flow's
// average between; they leave in pieces of what fell in one pieceWidth
// (finer than detection's rate buckets), each piece one frame. A record
// keeps its one slot while it is spread: pieces cost time, never memory.
const (
	pieceWidth = 200 * time.Millisecond
	// maxPiecesPerRecord bounds the pieces of one record, so that a
	// forged record of a day's span costs no more than half an hour's.
	maxPiecesPerRecord = 1800
)

// frameHeap orders the held frames: a binary heap, and beside it a run, a
// ring of entries that came in order. Most frames do (the samples of an
// sFlow replay, a record's next piece): they go to the run's end and leave
// from its head, in constant time, and only a frame earlier than the run's
// last sifts through the heap. What leaves is the earlier of the run's
// head and the heap's top.
type frameHeap struct {
	e    []heapEntry
	run  []heapEntry // a ring of cap(e) entries
	head int         // the run's first entry
	n    int         // entries in the run
}

// heapEntry is a held frame's place in the heap: its slot, with the key
// it is ordered by kept beside it, so that sifting compares entries that
// lie together rather than slots a few hundred bytes apart.
type heapEntry struct {
	at   int64
	seq  uint64
	slot int32
}

// A heap written out rather than through container/heap, whose interface
// boxes each entry it pushes; four children a node rather than two, which
// halves the levels a frame leaving a full heap of 65,536 sifts through,
// and keeps the children it compares side by side.
const heapArity = 4

func (a *heapEntry) before(b *heapEntry) bool {
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

func (h *frameHeap) push(x heapEntry) {
	if h.n == 0 || !x.before(&h.run[(h.head+h.n-1)%len(h.run)]) {
		h.run[(h.head+h.n)%len(h.run)] = x
		h.n++
		return
	}
	h.e = append(h.e, x)
	e := h.e
	i := len(e) - 1
	for i > 0 {
		p := (i - 1) / heapArity
		if !x.before(&e[p]) {
			break
		}
		e[i] = e[p]
		i = p
	}
	e[i] = x
}

// fromRun reports whether the entry that leaves first is the run's head.
func (h *frameHeap) fromRun() bool {
	return h.n > 0 && (len(h.e) == 0 || h.run[h.head].before(&h.e[0]))
}

func (h *frameHeap) pop() int32 {
	if h.fromRun() {
		top := h.run[h.head].slot
		h.head = (h.head + 1) % len(h.run)
		h.n--
		return top
	}
	e := h.e
	top := e[0].slot
	n := len(e) - 1
	x := e[n]
	h.e = e[:n]
	e = e[:n]
	i := 0
	for {
		l := heapArity*i + 1
		if l >= n {
			break
		}
		m := l
		for c := l + 1; c < min(l+heapArity, n); c++ {
			if e[c].before(&e[m]) {
				m = c
			}
		}
		if !e[m].before(&x) {
			break
		}
		e[i] = e[m]
		i = m
	}
	if n > 0 {
		e[i] = x
	}
	return top
}

// min returns the entry that leaves first; the heap must not be empty.
func (h *frameHeap) min() *heapEntry {
	if h.fromRun() {
		return &h.run[h.head]
	}
	return &h.e[0]
}

// len returns how many entries wait.
func (h *frameHeap) len() int { return len(h.e) + h.n }

func newReorder(size int, hold time.Duration) *reorder {
	r := &reorder{slots: make([]heldFrame, size), free: make([]int32, size), hold: hold}
	for i := range r.free {
		r.free[i] = int32(size - 1 - i)
	}
	r.h = frameHeap{e: make([]heapEntry, 0, size), run: make([]heapEntry, max(size, 1))}
	return r
}

// arrived moves the release clock on for a datagram that arrived at.
func (r *reorder) arrived(at time.Time) {
	if r.hold >= 0 {
		r.release = max(r.release, at.UnixNano()-int64(r.hold))
	}
}

// push copies f in, to leave at its Timestamp, or spread over its
// record's span (see pieceWidth) when spread is set. When the heap is
// full, the oldest frame must leave first: push reports false, and the
// caller pops.
func (r *reorder) push(f *Frame, spread bool) bool {
	if len(r.free) == 0 {
		return false
	}
	i := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	s := &r.slots[i]
	s.f = *f
	s.n = copy(s.b[:], f.Data)
	s.f.Data, s.f.CaptureLength = nil, s.n
	s.at, s.left = f.Timestamp.UnixNano(), 0
	if r.hold >= 0 && s.at < r.release {
		// Live, the frames up to the release clock may have left: one
		// that comes behind it is put at it. With no hold-back that is
		// every flow record, put at its arrival as TelemetryConfig says,
		// which is not worth counting.
		s.at = r.release
		if r.hold > 0 {
			r.late++
		}
	}
	if smp := &f.Sample; spread && smp.Record && smp.Packets > 1 && smp.Span > 0 {
		s.step = int64(smp.Span) / int64(smp.Packets-1)
		s.next = s.at - int64(smp.Span)
		s.left, s.leftBytes = smp.Packets, smp.Bytes
		s.piece()
	}
	s.seq = r.seq
	r.seq++
	r.h.push(heapEntry{at: s.at, seq: s.seq, slot: i})
	return true
}

// piece finds the next piece of a record being spread: its packets, those
// within a piece's width of the next one, and its time, its last packet's,
// at which it waits in the heap.
func (s *heldFrame) piece() {
	width := max(int64(pieceWidth), int64(s.f.Sample.Span)/maxPiecesPerRecord)
	s.count = s.left
	if s.step > 0 {
		s.count = min(s.count, uint64((width-1)/s.step)+1)
	}
	s.at = s.next + int64(s.count-1)*s.step
}

// ready reports whether the oldest frame may leave: the release clock has
// passed it, or end (the input is over, or the heap is full) says all may.
func (r *reorder) ready(end bool) bool {
	if r.h.len() == 0 {
		return false
	}
	return end || r.hold >= 0 && r.h.min().at <= r.release
}

// pop fills f with the oldest frame, or the next piece of the oldest
// record being spread; its Data is valid until the next pop.
func (r *reorder) pop(f *Frame) {
	i := r.h.pop()
	s := &r.slots[i]
	*f = s.f
	n := copy(r.out[:], s.b[:s.n])
	f.Data = r.out[:n]
	if s.left == 0 {
		r.free = append(r.free, i)
		r.stamp(f, s.at)
		return
	}
	c := s.count
	b := scaledShare(s.leftBytes, c, s.left)
	r.stamp(f, s.at)
	f.Sample.Packets, f.Sample.Bytes = c, b
	f.Sample.Span = time.Duration(s.at - s.next)
	s.left -= c
	s.leftBytes -= b
	if s.left == 0 {
		r.free = append(r.free, i)
		return
	}
	s.next = s.at + s.step
	s.piece()
	s.seq = r.seq
	r.seq++
	r.h.push(heapEntry{at: s.at, seq: s.seq, slot: i})
}

// stamp sets the time of f, leaving, to at, or to the time of the frame
// that left before it where that is later.
func (r *reorder) stamp(f *Frame, at int64) {
	if at < r.last {
		at = r.last
		r.late++
	}
	r.last = at
	if at != f.Timestamp.UnixNano() {
		f.Timestamp = time.Unix(0, at)
	}
}

// scaledShare returns n·part/whole, rounded down, for part <= whole; in
// 128 bits, so that it cannot overflow. The last piece of a record gets
// what the shares before it left, so that no byte is lost to rounding.
func scaledShare(n, part, whole uint64) uint64 {
	if part >= whole {
		return n
	}
	hi, lo := bits.Mul64(n, part)
	q, _ := bits.Div64(hi, lo, whole)
	return q
}

// len returns how many frames wait.
func (r *reorder) len() int { return r.h.len() }
