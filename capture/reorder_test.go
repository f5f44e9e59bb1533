package capture

import (
	"testing"
	"time"
)

// TestReorderSpreadsRecords: replayed, a flow record's packets leave in
// pieces over its span, evenly spaced from its first packet to its last,
// in time order with everything else, with no packet or byte lost or
// added; live, a record leaves whole at its end.
func TestReorderSpreadsRecords(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	record := func(end time.Duration, packets, bytes uint64, span time.Duration) Frame {
		return Frame{Data: []byte{0x45}, Timestamp: t0.Add(end),
			Sample: Sampled{Packets: packets, Bytes: bytes, Span: span, Record: true, Rate: 1}}
	}
	type piece struct {
		at      time.Duration
		packets uint64
	}
	drain := func(r *reorder, width time.Duration) (out []piece, bytes uint64) {
		var f Frame
		for r.len() > 0 {
			r.pop(&f)
			out = append(out, piece{f.Timestamp.Sub(t0), f.Sample.Packets})
			bytes += f.Sample.Bytes
			if f.Sample.Span > width {
				t.Fatalf("a piece of %v: wider than %v", f.Sample.Span, width)
			}
		}
		return out, bytes
	}

	// Two packets ten seconds apart: one at each end, exactly.
	r := newReorder(4, -1)
	f := record(10*time.Second, 2, 200, 10*time.Second)
	r.push(&f, true)
	got, bytes := drain(r, pieceWidth)
	if len(got) != 2 || got[0] != (piece{0, 1}) || got[1] != (piece{10 * time.Second, 1}) || bytes != 200 {
		t.Errorf("2 packets over 10s: %v, %d bytes", got, bytes)
	}

	// 201 packets over 20 s, beside a frame of one moment at 5.5 s: about
	// ten packets a second, in time order, the moment's frame among them.
	r = newReorder(4, -1)
	f = record(20*time.Second, 201, 201*1000+7, 20*time.Second)
	r.push(&f, true)
	one := Frame{Data: []byte{0x45}, Timestamp: t0.Add(5500 * time.Millisecond), Sample: Sampled{Packets: 1, Bytes: 60, Rate: 1}}
	r.push(&one, true)
	got, bytes = drain(r, pieceWidth)
	var packets uint64
	perSecond := map[int64]uint64{}
	for i, p := range got {
		if i > 0 && p.at < got[i-1].at {
			t.Fatalf("out of time order: %v", got)
		}
		packets += p.packets
		perSecond[int64(p.at/time.Second)] += p.packets
	}
	if packets != 202 || bytes != 201*1000+7+60 {
		t.Errorf("packets %d, bytes %d: want 202, %d", packets, bytes, 201*1000+7+60)
	}
	for s := int64(0); s < 20; s++ {
		if n := perSecond[s]; n < 10 || n > 11 {
			t.Errorf("second %d holds %d packets, want 10 (11 with the moment's frame)", s, n)
		}
	}

	// A forged record of a day: at most maxPiecesPerRecord pieces.
	r = newReorder(1, -1)
	f = record(24*time.Hour, 1<<36, 1<<40, 24*time.Hour)
	r.push(&f, true)
	got, bytes = drain(r, 24*time.Hour/maxPiecesPerRecord)
	if len(got) > maxPiecesPerRecord+1 || bytes != 1<<40 {
		t.Errorf("a day's record: %d pieces, %d bytes", len(got), bytes)
	}

	// Live: whole, at its end.
	r = newReorder(4, 0)
	f = record(10*time.Second, 2, 200, 10*time.Second)
	r.push(&f, false)
	if got, _ := drain(r, 10*time.Second); len(got) != 1 || got[0] != (piece{10 * time.Second, 2}) {
		t.Errorf("live: %v", got)
	}
}

// TestFrameHeapOrder: entries leave in (time, arrival) order whatever mix
// of in-order ones (the run) and earlier ones (the heap) comes, pushes and
// pops interleaved, the structure full or empty in between.
func TestFrameHeapOrder(t *testing.T) {
	const size = 64
	h := frameHeap{e: make([]heapEntry, 0, size), run: make([]heapEntry, size)}
	rng := uint64(7)
	next := func(n uint64) int64 {
		rng = rng*6364136223846793005 + 1442695040888963407
		return int64((rng >> 33) % n)
	}
	var seq uint64
	var at int64
	var held []heapEntry // what waits, as a reference
	for step := range 20000 {
		if h.len() != len(held) {
			t.Fatalf("step %d: %d waiting, want %d", step, h.len(), len(held))
		}
		if h.len() < size && (h.len() == 0 || next(3) > 0) {
			// Mostly later than the last, some earlier, some ties.
			switch next(4) {
			case 0:
				at -= next(50)
			case 1:
			default:
				at += next(10)
			}
			x := heapEntry{at: at, seq: seq, slot: int32(seq % size)}
			seq++
			h.push(x)
			held = append(held, x)
			continue
		}
		first := 0
		for i := range held {
			if held[i].before(&held[first]) {
				first = i
			}
		}
		want := held[first]
		held = append(held[:first], held[first+1:]...)
		if m := h.min(); *m != want {
			t.Fatalf("step %d: min %+v, want %+v", step, *m, want)
		}
		if got := h.pop(); got != want.slot {
			t.Fatalf("step %d: popped slot %d, want %d (%+v)", step, got, want.slot, want)
		}
	}
}

// BenchmarkFrameHeap: a full heap of DefaultReorder entries, as a replay
// keeps it, each new entry a little out of order (flow records' ends), one
// leaving for each that comes.
func BenchmarkFrameHeap(b *testing.B) {
	const size = DefaultReorder
	h := frameHeap{e: make([]heapEntry, 0, size), run: make([]heapEntry, size)}
	rng := uint64(7)
	var seq uint64
	at := int64(1e12)
	push := func() {
		rng = rng*6364136223846793005 + 1442695040888963407
		at += 1000
		h.push(heapEntry{at: at - int64(rng>>40)%1e6, seq: seq, slot: int32(seq % size)})
		seq++
	}
	for h.len() < size {
		push()
	}
	for b.Loop() {
		h.pop()
		push()
	}
}
