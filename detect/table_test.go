package detect

import (
	"math/rand/v2"
	"testing"
	"time"
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
