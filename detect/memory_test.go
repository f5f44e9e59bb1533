package detect

import (
	"container/list"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// addrN returns the n-th of distinct IPv4 addresses.
func addrN(n int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n)*2654435761|1<<28)
	return netip.AddrFrom4(b)
}

// open gives t what an open incident holds on the heap: its id and its
// evidence record.
func open(t *track, i int) {
	t.id = incidentID(KindReflection.String(), addrN(i).String(), base)
	t.evid = &evidence{}
}

// TestEntryCosts fills each table with n entries as heavy as they get (an
// open incident with evidence; a victim's reflector slots all taken) and
// checks that what the heap grew by, per entry, is at most the cost
// FitMemory sizes the table by and the README documents.
func TestEntryCosts(t *testing.T) {
	const n = 20000
	now := base
	var ft *Flows // made before the measure: its probation table is not per entry
	for _, tc := range []struct {
		name string
		cost int64
		fill func(e *Engine)
	}{
		{"max_flows", FlowEntryBytes, func(*Engine) {
			for i := range n {
				p := udpPacket(addrN(i).String(), "192.0.2.7", uint16(1024+i), 7, time.Duration(i), 60)
				ft.Update(&p)
				r := reply(p, 0)
				ft.Update(&r)
			}
			if s := ft.Stats(); s.Active != n || s.OneWay != 0 {
				t.Fatalf("flows %+v", s)
			}
		}},
		{"reflection.max_victims", VictimEntryBytes, func(e *Engine) {
			d := builtin[*Reflection](e)
			d.hosts.adm, d.prefixes.adm = nil, nil
			for i := range n {
				a := addrN(i)
				for _, isPrefix := range []bool{false, true} {
					pfx, tab := netip.PrefixFrom(a, 32), d.hosts
					if isPrefix {
						pfx, tab = netip.PrefixFrom(a, 31), d.prefixes
					}
					v, _ := tab.getOrAdd(victimOf(pfx, 0), now)
					v.init(d, victimOf(pfx, 0), isPrefix)
					open(&v.t, i)
					for r := range 3 {
						v.refl.add(netip.AddrPortFrom(addrN(n+r), 7), onePacket(60), &d.slots)
						if isPrefix {
							v.hosts.add(netip.AddrPortFrom(addrN(2*n+r), 0), onePacket(60), &d.slots)
						}
					}
				}
			}
			// Victims hit from ever more reflectors take every slot.
			for i := 0; d.slots.refused == 0; i++ {
				v := d.hosts.get(victimOf(netip.PrefixFrom(addrN(i%n), 32), 0))
				for r := range tallyMax {
					v.refl.add(netip.AddrPortFrom(addrN(3*n+r), 7), onePacket(60), &d.slots)
				}
			}
		}},
		{"loop.max_pairs", PairEntryBytes, func(e *Engine) {
			d := builtin[*Loop](e)
			d.pairs.adm = nil
			for i := range n {
				k := pairKey{a: netip.AddrPortFrom(addrN(i), 7), b: netip.AddrPortFrom(addrN(n+i), 19)}
				p, _ := d.pairs.getOrAdd(k, now)
				*p = pair{d: d, k: k}
				open(&p.t, i)
			}
		}},
		{"spoofed_flood.max_targets", TargetEntryBytes, func(e *Engine) {
			d := builtin[*SpoofedFlood](e)
			d.targets.adm = nil
			for i := range n {
				k := targetKey{addr: addrN(i)}
				tg, _ := d.targets.getOrAdd(k, now)
				*tg = target{d: d, k: k}
				tg.reset()
				open(&tg.t, i)
			}
		}},
		{"scan.max_scanners", ScannerEntryBytes, func(e *Engine) {
			d := builtin[*Scan](e)
			d.scanners.adm = nil
			for i := range n {
				k := scanKey{src: addrN(i), proto: 17}
				s, _ := d.scanners.getOrAdd(k, now)
				*s = scanner{d: d, k: k}
				open(&s.t, i)
				e.r.active = append(e.r.active, s) // open till its rearm time
			}
		}},
		{"exposed.max_findings", FindingEntryBytes, func(e *Engine) {
			d := builtin[*Exposed](e)
			for i := range n {
				k := exposedKey{host: netip.AddrPortFrom(addrN(i), 7), proto: 17}
				f, _ := d.services.getOrAdd(k, now)
				*f = exposedService{d: d, k: k}
				open(&f.t, i)
				e.r.active = append(e.r.active, f) // open till its rearm time
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Reflection.MaxVictims, cfg.Loop.MaxPairs, cfg.SpoofedFlood.MaxTargets = n, n, n
			cfg.Scan.MaxScanners, cfg.Exposed.MaxFindings = n, n
			e, err := New(cfg, &countingWriter{})
			if err != nil {
				t.Fatal(err)
			}
			ft, _ = NewFlows(FlowConfig{MaxFlows: n, Ports: NewPortSet(7)})
			before := heapInUse()
			tc.fill(e)
			per := (heapInUse() - before) / n
			runtime.KeepAlive(e)
			runtime.KeepAlive(ft)
			t.Logf("%s: %d bytes per entry (documented %d)", tc.name, per, tc.cost)
			if per > tc.cost {
				t.Errorf("%s: an entry takes %d bytes, more than the %d documented", tc.name, per, tc.cost)
			}
		})
	}
}

// TestFitMemory checks the bound's accounting: for a range of budgets and
// worker counts, the tables sized from max_memory, at their documented
// cost per entry, fit in what the budget leaves for tables, and that in
// the budget; sizes given explicitly are kept, and sizes that need more
// than the budget are refused, naming them.
func TestFitMemory(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		for _, bytes := range []int64{Budget{Workers: workers}.Min(), 100 << 20, DefaultMaxMemory, 1 << 30, 16 << 30} {
			b := Budget{bytes, workers}
			if bytes < b.Min() {
				continue
			}
			var c Config
			flows, logN := 0, 0
			tables := append(c.Tables(&flows), TableSize{"the incident log", &logN, 2048, 4})
			if err := FitMemory(b, tables); err != nil {
				t.Fatalf("%s, %d workers: %v", FormatBytes(bytes), workers, err)
			}
			var sum int64
			for _, tb := range tables {
				if *tb.Size < minEntries {
					t.Errorf("%s: %s is %d", FormatBytes(bytes), tb.Setting, *tb.Size)
				}
				sum += int64(*tb.Size) * tb.Bytes
			}
			if avail := b.TableBytes(); sum > avail {
				t.Errorf("%s, %d workers: tables take %d bytes of the %d left for them (Go's limit %d)", FormatBytes(bytes), workers, sum, avail, b.GoLimit())
			}
		}
	}

	// The defaults: what the README lists.
	var c Config
	flows := 0
	if err := FitMemory(Budget{Bytes: DefaultMaxMemory}, c.Tables(&flows)); err != nil {
		t.Fatal(err)
	}
	t.Logf("at %s: flows %d, victims %d, pairs %d, targets %d, scanners %d, findings %d", FormatBytes(DefaultMaxMemory),
		flows, c.Reflection.MaxVictims, c.Loop.MaxPairs, c.SpoofedFlood.MaxTargets, c.Scan.MaxScanners, c.Exposed.MaxFindings)
	if flows != defaultMaxFlows() {
		t.Errorf("flows %d, NewFlows's default %d", flows, defaultMaxFlows())
	}

	// Sizes given are kept; the other tables share what they leave.
	c = Config{}
	c.Exposed.MaxFindings = 1000
	flows = 1_000_000
	if err := FitMemory(Budget{Bytes: DefaultMaxMemory}, c.Tables(&flows)); err != nil {
		t.Fatal(err)
	}
	if flows != 1_000_000 || c.Exposed.MaxFindings != 1000 || c.Reflection.MaxVictims == 0 {
		t.Errorf("flows %d, findings %d, victims %d", flows, c.Exposed.MaxFindings, c.Reflection.MaxVictims)
	}

	for _, tc := range []struct {
		budget  int64
		workers int
		flows   int
		victims int
		want    string
	}{
		{32 << 20, 1, 0, 0, "detect: max_memory: 32MiB is too small for 1 worker(s) (at least 85MiB)"},
		{100 << 20, 2, 0, 0, "detect: max_memory: 100MiB is too small for 2 worker(s) (at least 165MiB)"},
		{DefaultMaxMemory, 1, 5_000_000, 0, "detect: max_flows 5000000 need 534.1MiB, more than max_memory 256MiB leaves for tables (170MiB)"},
		{DefaultMaxMemory, 1, 1_000_000, 50_000, "detect: max_flows 1000000, reflection.max_victims 50000 need"},
		{DefaultMaxMemory, 1, 1_585_000, 0, "detect: max_flows 1585000 take 169.3MiB of the 170MiB that max_memory 256MiB leaves for tables: too little for reflection.max_victims"},
		{DefaultMaxMemory, 1, -1, 0, "detect: max_flows: must be positive, not -1"},
	} {
		fit := func(budget int64) error {
			var c Config
			c.Reflection.MaxVictims = tc.victims
			flows := tc.flows
			return FitMemory(Budget{budget, tc.workers}, c.Tables(&flows))
		}
		err := fit(tc.budget)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("FitMemory(%s, %d workers, flows %d, victims %d) = %v, want %q", FormatBytes(tc.budget), tc.workers, tc.flows, tc.victims, err, tc.want)
			continue
		}
		// The budget the error asks for is enough, and no more than needed.
		m := regexp.MustCompile(`(raise max_memory to|at least) (\d+)MiB`).FindStringSubmatch(err.Error())
		if m == nil {
			continue
		}
		mib, _ := strconv.ParseInt(m[2], 10, 64)
		if err := fit(mib << 20); err != nil {
			t.Errorf("%v; and with %dMiB: %v", tc.want, mib, err)
		}
		if err := fit((mib - 1) << 20); err == nil {
			t.Errorf("%v; %dMiB would do", tc.want, mib-1)
		}
	}
}

// TestLRUMatchesModel runs random gets, adds and removes on a small lru
// against a map and a list: same keys, same values, same eviction order,
// whatever the index has been through (growth, deletions shifting probe
// runs back).
func TestLRUMatchesModel(t *testing.T) {
	const size = 300
	var evicted []int
	l, err := newLRU(size, func(k *int) uint64 { return mix(uint64(*k)) & 0xffff_f000_0000_0000 }, // clustered homes
		func(k *int, _ *int) { evicted = append(evicted, *k) })
	if err != nil {
		t.Fatal(err)
	}
	model := map[int]*list.Element{}
	order := list.New() // front: most recently used; values are keys
	rng := rand.New(rand.NewPCG(1, 2))
	h := func(k int) uint64 { return l.hash(&k) }
	for step := range 200_000 {
		k := rng.IntN(1000)
		switch op := rng.IntN(10); {
		case op < 5:
			v := l.get(&k, h(k))
			e, ok := model[k]
			if (v != nil) != ok || (v != nil && *v != k*7) {
				t.Fatalf("step %d: get %d = %v, model has it: %v", step, k, v, ok)
			}
			if ok {
				order.MoveToFront(e)
			}
		case op < 8:
			if model[k] != nil {
				continue
			}
			evicted = evicted[:0]
			*l.add(&k, h(k)) = k * 7
			if order.Len() == size {
				old := order.Remove(order.Back()).(int)
				delete(model, old)
				if len(evicted) != 1 || evicted[0] != old {
					t.Fatalf("step %d: evicted %v, want %d", step, evicted, old)
				}
			}
			model[k] = order.PushFront(k)
		default:
			l.remove(&k, h(k))
			if e := model[k]; e != nil {
				order.Remove(e)
				delete(model, k)
			}
		}
		if l.len() != order.Len() {
			t.Fatalf("step %d: len %d, model %d", step, l.len(), order.Len())
		}
	}
	if k, _ := l.oldest(); order.Len() > 0 && *k != order.Back().Value.(int) {
		t.Errorf("oldest %d, model %d", *k, order.Back().Value.(int))
	}
}

// sized returns the default config with its tables sized as an Engine
// sizes them.
func sized(t *testing.T) Config {
	t.Helper()
	c := DefaultConfig()
	s, err := c.sizes()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
