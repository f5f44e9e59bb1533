package detect

import (
	"math"
	"math/bits"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// table is a bounded map from a key to a per-key entry: golang-lru's LRU
// that counts its evictions, optionally behind an admission sketch for
// keys an attacker controls. Entries are allocated one by one, so that an
// entry evicted while its incident is still listed as open stays valid:
// it is not reused, and goes when nothing refers to it any more. It has
// no lock: one goroutine owns it.
type table[K comparable, V any] struct {
	name    string
	size    int
	hash    func(K) uint64 // feeds the admission sketch
	lru     *simplelru.LRU[K, *V]
	adm     *admission // nil: every key is admitted
	evicted uint64
	// free holds evicted entries for reuse, with their buffers, so that
	// churn under a flood of new keys does not allocate entries.
	free []*V
	// present counts the keys in the table by a few bits of their hash,
	// saturating: a key whose count is 0 is certainly not there, so the
	// packets of new keys (a flood of forged sources: nearly every one)
	// skip the map and go to admission. A few bytes per entry, against a
	// lookup that misses the cache.
	present []uint8
	// last is the key most recently found or added, and lastV its entry
	// (nil: none), which is so at the front of the LRU already: a packet
	// for the same key as the one before (a flood's target, a busy
	// victim) skips the hash and the map.
	last  K
	lastV *V
	// missed is the key get found absent last, while missing: a key
	// looked up at every packet that has no entry (the target of a flood,
	// which the exposed detector looks up until it answers) skips the
	// hash. An add forgets it; an eviction leaves it absent.
	missed  K
	missing bool
}

// presentPerEntry is the presence counters per entry of a table.
const presentPerEntry = 4

// newTable makes a table of at most size entries, hashed by hash for the
// admission sketch. onEvict, if not nil, is called with each entry pushed
// out by the bound and reports whether the entry may be reused (false
// while something else still refers to it).
func newTable[K comparable, V any](name string, size int, hash func(K) uint64, admitEpoch time.Duration, onEvict func(*V) bool) (*table[K, V], error) {
	t := &table[K, V]{name: name, size: size, hash: hash}
	if size > 0 {
		t.present = make([]uint8, 1<<bits.Len(uint(size*presentPerEntry-1)))
	}
	if admitEpoch > 0 {
		t.adm = &admission{epoch: admitEpoch}
	}
	l, err := simplelru.NewLRU[K, *V](size, func(k K, v *V) {
		t.evicted++
		if v == t.lastV {
			t.lastV = nil
		}
		if c := &t.present[t.slot(t.hash(k))]; *c != math.MaxUint8 {
			*c-- // a saturated count stays: it may only say "maybe"
		}
		if onEvict == nil || onEvict(v) {
			t.free = append(t.free, v)
		}
	})
	if err != nil {
		return nil, errorf("%s: size %d: %w", name, size, err)
	}
	t.lru = l
	return t, nil
}

// slot returns the presence counter of hash h: bits from 18 up, which
// the admission sketch (the lowest ten and the highest sixteen) leaves.
func (t *table[K, V]) slot(h uint64) uint64 { return (h >> 18) & uint64(len(t.present)-1) }

// get returns k's entry, or nil.
func (t *table[K, V]) get(k K) *V {
	if t.lastV != nil && k == t.last {
		return t.lastV
	}
	if t.missing && k == t.missed {
		return nil
	}
	if t.present[t.slot(t.hash(k))] != 0 {
		if v, ok := t.lru.Get(k); ok {
			t.last, t.lastV = k, v
			return v
		}
	}
	t.missed, t.missing = k, true
	return nil
}

// getOrAdd returns k's entry, making one if k is admitted; it returns nil
// for a key not admitted. made reports a new entry, for the caller to
// fill: it may be a reused one, whose old contents the caller must
// overwrite (keeping buffers if it likes).
func (t *table[K, V]) getOrAdd(k K, now time.Time) (v *V, made bool) {
	if t.lastV != nil && k == t.last {
		return t.lastV, false
	}
	h := t.hash(k)
	c := &t.present[t.slot(h)]
	if *c != 0 {
		if v, ok := t.lru.Get(k); ok {
			t.last, t.lastV = k, v
			return v, false
		}
	}
	if t.adm != nil && !t.adm.admit(h, now) {
		return nil, false
	}
	if n := len(t.free); n > 0 {
		v, t.free = t.free[n-1], t.free[:n-1]
	} else {
		v = new(V)
	}
	t.lru.Add(k, v)
	t.missing = false
	if *c != math.MaxUint8 { // after the Add: its eviction may share c
		*c++
	}
	// An entry evicted by this Add went to the free list; v is not it.
	t.last, t.lastV = k, v
	return v, true
}

func (t *table[K, V]) stats() TableStats {
	s := TableStats{Name: t.name, Len: t.lru.Len(), Cap: t.size, Evicted: t.evicted}
	if t.adm != nil {
		s.Rejected = t.adm.rejected
	}
	return s
}
