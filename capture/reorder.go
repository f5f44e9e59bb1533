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
type reorder struct {
	slots []heldFrame
	free  []int32
	h     frameHeap
	seq   uint64
	// hold is the hold-back; below 0, frames wait for the end of the
	// input or a full heap (a capture file replayed).
	hold    time.Duration
	release int64 // Unix ns: frames at or before it may leave
	// out is where the frame that left last keeps its bytes.
	out [heldBytes]byte
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
	pieceWidth = time.Second
	// maxPiecesPerRecord bounds the pieces of one record, so that a
	// forged record of a day's span costs no more than half an hour's.
	maxPiecesPerRecord = 1800
)

type frameHeap struct {
	idx   []int32
	slots []heldFrame
}

// A binary heap of slot indexes, written out rather than through
// container/heap, whose interface boxes each index it pushes.

func (h *frameHeap) less(i, j int) bool {
	a, b := &h.slots[h.idx[i]], &h.slots[h.idx[j]]
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

func (h *frameHeap) push(x int32) {
	h.idx = append(h.idx, x)
	for i := len(h.idx) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.idx[i], h.idx[p] = h.idx[p], h.idx[i]
		i = p
	}
}

func (h *frameHeap) pop() int32 {
	x := h.idx[0]
	n := len(h.idx) - 1
	h.idx[0] = h.idx[n]
	h.idx = h.idx[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && h.less(l, m) {
			m = l
		}
		if l+1 < n && h.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		h.idx[i], h.idx[m] = h.idx[m], h.idx[i]
		i = m
	}
	return x
}

func newReorder(size int, hold time.Duration) *reorder {
	r := &reorder{slots: make([]heldFrame, size), free: make([]int32, size), hold: hold}
	for i := range r.free {
		r.free[i] = int32(size - 1 - i)
	}
	r.h = frameHeap{idx: make([]int32, 0, size), slots: r.slots}
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
	if smp := &f.Sample; spread && smp.Record && smp.Packets > 1 && smp.Span > 0 {
		s.step = int64(smp.Span) / int64(smp.Packets-1)
		s.next = s.at - int64(smp.Span)
		s.left, s.leftBytes = smp.Packets, smp.Bytes
		s.piece()
	}
	s.seq = r.seq
	r.seq++
	r.h.push(i)
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
	if len(r.h.idx) == 0 {
		return false
	}
	return end || r.hold >= 0 && r.slots[r.h.idx[0]].at <= r.release
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
		return
	}
	c := s.count
	b := scaledShare(s.leftBytes, c, s.left)
	f.Timestamp = time.Unix(0, s.at)
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
	r.h.push(i)
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
func (r *reorder) len() int { return len(r.h.idx) }
