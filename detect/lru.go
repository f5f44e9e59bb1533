package detect

// lru is a bounded map that forgets its least recently used key to make
// room for a new one, for the flow table: millions of small entries, where
// a general-purpose LRU (golang-lru's, which the detection tables use: see
// table) would cost four times the entry in map and list overhead and an
// allocation per new flow. Its slots (key, value and recency links) live in
// pages that are never moved, so a value's address stays valid while its
// key is in the map, and they are found through an open-addressing index
// of 32-bit slot numbers. Once it has grown to its size it allocates
// nothing, and besides what the keys and values hold it has no pointers
// for the garbage collector to follow: a slot costs its key, its value
// and 8 bytes, and the index 8 bytes more per slot at most (it is kept at
// most half full, for short probes).
//
// It has no lock: one goroutine owns it.
type lru[K comparable, V any] struct {
	hash    func(*K) uint64
	onEvict func(*K, *V) // called with the slot about to be reused
	size    int
	pages   [][]lruSlot[K, V]
	index   []uint32 // slot number + 1; 0: empty
	used    int      // slots handed out so far, live or free
	live    int
	free    uint32 // a free slot + 1, the next ones chained through next
	head    uint32 // the most recently used slot + 1
	tail    uint32 // the least recently used slot + 1
}

type lruSlot[K comparable, V any] struct {
	key        K
	val        V
	prev, next uint32 // neighbours + 1 in recency order, prev the more recent
}

const (
	lruPageBits = 10 // 1024 slots a page
	lruPageSize = 1 << lruPageBits
	// maxTableSize bounds a table's size: slot numbers and the index,
	// twice as long, must fit in 32 bits.
	maxTableSize = 1 << 30
)

// newLRU returns an empty map of at most size keys, hashed by hash. onEvict,
// if not nil, sees each entry pushed out by the bound.
func newLRU[K comparable, V any](size int, hash func(*K) uint64, onEvict func(*K, *V)) (*lru[K, V], error) {
	if size < 1 || size > maxTableSize {
		return nil, errorf("size %d is out of range (1 to %d)", size, maxTableSize)
	}
	return &lru[K, V]{hash: hash, onEvict: onEvict, size: size}, nil
}

func (l *lru[K, V]) slot(s uint32) *lruSlot[K, V] {
	s--
	return &l.pages[s>>lruPageBits][s&(lruPageSize-1)]
}

// home is where hash h starts its probe in the index.
func (l *lru[K, V]) home(h uint64) int {
	return int(uint64(uint32(h>>32)) * uint64(len(l.index)) >> 32)
}

// find returns where k is in the index and its slot, or where it would go
// and 0. Keys go by pointer: the flow table's are 42 bytes, whose copies
// cost a flood more than the look-up.
func (l *lru[K, V]) find(k *K, h uint64) (int, uint32) {
	i := l.home(h)
	for {
		s := l.index[i]
		if s == 0 || l.slot(s).key == *k {
			return i, s
		}
		if i++; i == len(l.index) {
			i = 0
		}
	}
}

// get returns k's value, marked most recently used, or nil. h is k's hash.
func (l *lru[K, V]) get(k *K, h uint64) *V {
	if l.live == 0 {
		return nil
	}
	_, s := l.find(k, h)
	if s == 0 {
		return nil
	}
	l.unlink(s)
	l.pushFront(s)
	return &l.slot(s).val
}

// add maps k, which must be absent, to a zero value and returns it, marked
// most recently used. A full map first evicts its least recently used key.
// h is k's hash.
func (l *lru[K, V]) add(k *K, h uint64) *V {
	var s uint32
	switch {
	case l.free != 0:
		s = l.free
		l.free = l.slot(s).next
	case l.used < l.size:
		if l.used&(lruPageSize-1) == 0 {
			l.pages = append(l.pages, make([]lruSlot[K, V], min(lruPageSize, l.size-l.used)))
		}
		l.used++
		s = uint32(l.used)
	default:
		s = l.tail
		e := l.slot(s)
		if l.onEvict != nil {
			l.onEvict(&e.key, &e.val)
		}
		l.delete(&e.key)
	}
	if (l.live+1)*2 > len(l.index) {
		l.grow()
	}
	i, _ := l.find(k, h)
	l.index[i] = s
	e := l.slot(s)
	var zero V
	e.key, e.val = *k, zero
	l.pushFront(s)
	l.live++
	return &e.val
}

// remove takes k out of the map, if it is there.
func (l *lru[K, V]) remove(k *K, h uint64) {
	if l.live == 0 {
		return
	}
	if _, s := l.find(k, h); s != 0 {
		l.delete(k)
		l.slot(s).next = l.free
		l.free = s
	}
}

// oldest returns the least recently used key and its value, without
// marking it used, or nils.
func (l *lru[K, V]) oldest() (*K, *V) {
	if l.tail == 0 {
		return nil, nil
	}
	e := l.slot(l.tail)
	return &e.key, &e.val
}

func (l *lru[K, V]) len() int { return l.live }

// delete unlinks k, which is in the map, from the index and the recency
// list, leaving its slot to the caller. Entries after it in its probe
// run move back into the hole (linear probing's deletion without
// tombstones), so lookups stay short however many keys come and go.
func (l *lru[K, V]) delete(k *K) {
	i, s := l.find(k, l.hash(k))
	l.unlink(s)
	l.live--
	n := len(l.index)
	for j := i; ; {
		l.index[i] = 0
		for {
			if j++; j == n {
				j = 0
			}
			t := l.index[j]
			if t == 0 {
				return
			}
			// The entry at j moves to the hole at i unless its home lies
			// cyclically within (i, j].
			h := l.home(l.hash(&l.slot(t).key))
			if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
				l.index[i] = t
				i = j
				break
			}
		}
	}
}

// grow doubles the index, up to twice the map's size, and puts every key
// back in.
func (l *lru[K, V]) grow() {
	n := min(max(2*len(l.index), 64), 2*l.size)
	l.index = make([]uint32, n)
	for s := l.head; s != 0; s = l.slot(s).next {
		k := &l.slot(s).key
		i, _ := l.find(k, l.hash(k))
		l.index[i] = s
	}
}

func (l *lru[K, V]) unlink(s uint32) {
	e := l.slot(s)
	if e.prev != 0 {
		l.slot(e.prev).next = e.next
	} else {
		l.head = e.next
	}
	if e.next != 0 {
		l.slot(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = 0, 0
}

func (l *lru[K, V]) pushFront(s uint32) {
	e := l.slot(s)
	e.prev, e.next = 0, l.head
	if l.head != 0 {
		l.slot(l.head).prev = s
	} else {
		l.tail = s
	}
	l.head = s
}
