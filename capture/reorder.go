package capture

import "time"

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
}

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

// push copies f in, to leave at its Timestamp. When the heap is full, the
// oldest frame must leave first: push reports false, and the caller pops.
func (r *reorder) push(f *Frame) bool {
	if len(r.free) == 0 {
		return false
	}
	i := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	s := &r.slots[i]
	s.f = *f
	s.n = copy(s.b[:], f.Data)
	s.f.Data, s.f.CaptureLength = nil, s.n
	s.at, s.seq = f.Timestamp.UnixNano(), r.seq
	r.seq++
	r.h.push(i)
	return true
}

// ready reports whether the oldest frame may leave: the release clock has
// passed it, or end (the input is over, or the heap is full) says all may.
func (r *reorder) ready(end bool) bool {
	if len(r.h.idx) == 0 {
		return false
	}
	return end || r.hold >= 0 && r.slots[r.h.idx[0]].at <= r.release
}

// pop fills f with the oldest frame; its Data is valid until the next pop.
func (r *reorder) pop(f *Frame) {
	i := r.h.pop()
	s := &r.slots[i]
	*f = s.f
	n := copy(r.out[:], s.b[:s.n])
	f.Data = r.out[:n]
	r.free = append(r.free, i)
}

// len returns how many frames wait.
func (r *reorder) len() int { return len(r.h.idx) }
