package detect

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// TestTablePresence: the presence counters never hide a key the table
// holds, whatever collides, saturates or is evicted: get and getOrAdd find
// exactly the keys the LRU holds.
func TestTablePresence(t *testing.T) {
	for _, slots := range []uint64{1, 3, 1 << 20} { // every key on one counter (saturates), few, many
		tb, err := newTable[uint32, int]("test", 300, func(k uint32) uint64 { return uint64(k) % slots << 18 }, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, slots))
		now := time.Unix(0, 0)
		for range 200_000 {
			k := rng.Uint32N(1000)
			if rng.IntN(2) == 0 {
				if (tb.get(k) != nil) != tb.lru.Contains(k) {
					t.Fatalf("%d slots: get(%d) says %v, the LRU %v", slots, k, tb.get(k) != nil, tb.lru.Contains(k))
				}
				continue
			}
			had := tb.lru.Contains(k)
			v, made := tb.getOrAdd(k, now)
			if v == nil || made == had {
				t.Fatalf("%d slots: getOrAdd(%d): made %v, but the key was there: %v", slots, k, made, had)
			}
		}
		if slots == 1 && tb.present[0] != 255 {
			t.Errorf("one slot for every key: count %d, want it saturated", tb.present[0])
		}
	}
}

// TestTableLast: the table's memory of the key found last gives what the
// LRU holds for it, in the same recency order as an LRU that looked every
// key up, through runs of the same key, evictions of it and misses.
func TestTableLast(t *testing.T) {
	tb, err := newTable[uint32, int]("test", 50, func(k uint32) uint64 { return uint64(k) << 18 }, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := simplelru.NewLRU[uint32, bool](50, nil)
	rng := rand.New(rand.NewPCG(2, 3))
	now := time.Unix(0, 0)
	k := uint32(0)
	for i := range 100_000 {
		if rng.IntN(3) == 0 { // a run of the same key, mostly
			k = rng.Uint32N(120)
		}
		if rng.IntN(2) == 0 {
			v := tb.get(k)
			p, _ := tb.lru.Peek(k)
			if _, ok := ref.Get(k); (v != nil) != ok || v != p {
				t.Fatalf("step %d: get(%d) = %p, the LRU holds %p, the reference %v", i, k, v, p, ok)
			}
		} else {
			v, made := tb.getOrAdd(k, now)
			if _, ok := ref.Get(k); ok == made {
				t.Fatalf("step %d: getOrAdd(%d) made %v, the reference held it: %v", i, k, made, ok)
			} else if !ok {
				ref.Add(k, true)
			}
			if p, _ := tb.lru.Peek(k); v != p {
				t.Fatalf("step %d: getOrAdd(%d) = %p, the LRU holds %p", i, k, v, p)
			}
		}
		if i%97 == 0 && !slices.Equal(tb.lru.Keys(), ref.Keys()) {
			t.Fatalf("step %d: recency %v, want %v", i, tb.lru.Keys(), ref.Keys())
		}
	}
}
