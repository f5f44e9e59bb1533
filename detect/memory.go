package detect

import (
	"strconv"
	"strings"
)

// Every table keyed on packet data is bounded, and one budget, the
// sensor's max_memory, sets the bounds. What the Go runtime does not
// manage comes off it first (the kernel's capture buffers mapped into the
// process, the program's code), and the rest is the runtime's soft memory
// limit (GOMEMLIMIT); of that, the runtime's own needs (decoders, queues,
// sketches, and for each further worker its packets in flight) come off,
// gcPercent of what remains is for the tables and the rest is headroom for
// garbage between collections. A table whose size the configuration gives
// takes what that size costs; the others share the remainder by their
// shares. Like Suricata's flow.memcap, the budget is a cap that the sizes
// must fit in: sizes that together need more are refused, naming them,
// rather than silently cut.

// DefaultMaxMemory is max_memory's default: enough for the default
// tables, and a peak under it whatever a flood sends.
const DefaultMaxMemory int64 = 256 << 20

const (
	// captureBytes is the kernel's buffer of a capture socket (the live
	// package's default), mapped into the process: one per worker, live.
	// Offline runs reserve it too, so that a replay sizes its tables as
	// the live sensor did and raises the same alerts.
	captureBytes int64 = 32 << 20
	// programBytes is the program's code and what C libraries allocate.
	programBytes int64 = 8 << 20
	// runtimeBytes is what the runtime holds besides the tables: the
	// decoder and its fragment table, the probation table of one-way
	// flows, the admission sketches, read buffers and the outputs' queues
	// at their default size (25 MiB of RSS in all, code included,
	// reading a small capture).
	runtimeBytes int64 = 16 << 20
	// workerBytes is what each further worker adds: its decoder and the
	// chunks of decoded packets in flight to the detection goroutine,
	// full in a flood, where detection wants every packet.
	workerBytes int64 = 48 << 20
	// minTableBytes is the least the tables may share: below it, tables
	// would hold too few keys to be of use.
	minTableBytes int64 = 24 << 20
	// gcPercent of what the runtime's needs leave of its limit goes to
	// the tables.
	gcPercent = 85
)

// Budget is max_memory shared out for a sensor with Workers workers.
type Budget struct {
	Bytes   int64
	Workers int
}

func (b Budget) workers() int64 { return int64(max(b.Workers, 1)) }

// GoLimit returns the Go runtime's soft memory limit: the budget less what
// the runtime does not manage.
func (b Budget) GoLimit() int64 {
	return b.Bytes - b.workers()*captureBytes - programBytes
}

// TableBytes returns what the budget leaves for the tables, or a negative
// number when it leaves less than the least useful.
func (b Budget) TableBytes() int64 {
	rest := b.GoLimit() - runtimeBytes - (b.workers()-1)*workerBytes
	t := rest * gcPercent / 100
	if t < minTableBytes {
		return -1
	}
	return t
}

// Min returns the least max_memory for the budget's workers, in whole MiB.
func (b Budget) Min() int64 { return b.forTables(minTableBytes) }

// forTables returns the least max_memory, in whole MiB, that leaves tables
// bytes for the tables.
func (b Budget) forTables(tables int64) int64 {
	n := b.workers()*captureBytes + programBytes + runtimeBytes + (b.workers()-1)*workerBytes +
		(max(tables, minTableBytes)*100+gcPercent-1)/gcPercent
	return (n + 1<<20 - 1) &^ (1<<20 - 1)
}

// Bytes per entry of each table at most: the entry, its slot and share of
// the index in its table, and its incident's id and evidence record.
// TestEntryCosts measures them, so that they cannot drift from the code.
// The detection tables' golang-lru maps are measured nearly full; a map
// just grown is half empty, which the 64 bytes of margin above the
// measure cover.
const (
	// FlowEntryBytes: one two-way flow of the flow table.
	FlowEntryBytes = 112
	// VictimEntryBytes: per reflection.max_victims, a victim and a prefix
	// (each table holds max_victims) and their share of the reflector
	// slots that victims with many reflectors grow into.
	VictimEntryBytes = 3840
	// PairEntryBytes: one pair of endpoints of loop.pairs.
	PairEntryBytes = 1024
	// TargetEntryBytes: one target of spoofed_flood.targets, with its
	// distinct-source sketches and its memory of sources (4 KiB).
	TargetEntryBytes = 8512
	// ScannerEntryBytes: one scanner of scan.scanners, with its bitmaps.
	ScannerEntryBytes = 1856
	// FindingEntryBytes: one service of exposed.findings.
	FindingEntryBytes = 704
)

// reflectorSlotsPerVictim is the reflector slots, past the few each tally
// starts with, that the reflection tables may hold per max_victims: a
// victim hit from many reflectors takes up to tallyMax, so that one in
// eight may be counted exactly up to 96 reflectors however the rest fill.
const reflectorSlotsPerVictim = 16

// TableSize is one bounded table's claim on max_memory.
type TableSize struct {
	// Setting names the table's size setting as the configuration file
	// spells it ("max_flows", "reflection.max_victims").
	Setting string
	// Size points at the setting: 0 to size the table from the budget,
	// which FitMemory then sets.
	Size *int
	// Bytes is what an entry costs at most.
	Bytes int64
	// Share is the table's percentage of the tables' bytes. Detection's
	// tables and the flow table take 96%; the rest is for the caller's own
	// (the sensor's incident log), and stays unused without them. When
	// some tables are sized explicitly, the others scale their shares up
	// to what those leave.
	Share int
}

// minEntries is the fewest entries that a table sized from the budget may
// get: fewer means the budget is too small for the sizes given.
const minEntries = 64

// Tables returns the claims of detection's tables on max_memory, bound to
// c's size settings, and of a flow table of *flows flows.
func (c *Config) Tables(flows *int) []TableSize {
	return []TableSize{
		{"max_flows", flows, FlowEntryBytes, 50},
		{"reflection.max_victims", &c.Reflection.MaxVictims, VictimEntryBytes, 14},
		{"loop.max_pairs", &c.Loop.MaxPairs, PairEntryBytes, 4},
		{"spoofed_flood.max_targets", &c.SpoofedFlood.MaxTargets, TargetEntryBytes, 8},
		{"scan.max_scanners", &c.Scan.MaxScanners, ScannerEntryBytes, 8},
		{"exposed.max_findings", &c.Exposed.MaxFindings, FindingEntryBytes, 12},
	}
}

// FitMemory sizes the tables whose size is 0 from the budget: the tables
// sized explicitly take what they cost, and the others share the rest by
// their shares. It returns an error naming max_memory when the budget is
// too small, and the settings whose sizes take too much of it otherwise.
func FitMemory(b Budget, tables []TableSize) error {
	budget := b.Bytes
	avail := b.TableBytes()
	if avail < 0 {
		return errorf("max_memory: %s is too small for %d worker(s) (at least %s)",
			FormatBytes(budget), b.workers(), FormatBytes(b.Min()))
	}
	var given int64
	var names []string
	shares := 100
	// need is what the tables sized from the budget need to get
	// minEntries each, at the share they get.
	var need int64
	for _, t := range tables {
		if *t.Size == 0 {
			need = max(need, minEntries*t.Bytes*100/int64(t.Share))
		}
	}
	for _, t := range tables {
		switch n := *t.Size; {
		case n < 0:
			return errorf("%s: must be positive, not %d", t.Setting, n)
		case n > maxTableSize:
			return errorf("%s: %d is more than a table holds (%d)", t.Setting, n, maxTableSize)
		case n > 0:
			given += int64(n) * t.Bytes
			names = append(names, t.Setting+" "+strconv.Itoa(n))
			shares -= t.Share
		}
	}
	need = given + need*int64(shares)/100
	left := avail - given
	if left < 0 {
		return errorf("%s need %s, more than max_memory %s leaves for tables (%s): raise max_memory to %s or lower them",
			strings.Join(names, ", "), FormatBytes(given), FormatBytes(budget), FormatBytes(avail), FormatBytes(b.forTables(need)))
	}
	for _, t := range tables {
		if *t.Size != 0 {
			continue
		}
		n := left / int64(shares) * int64(t.Share) / t.Bytes
		if n < minEntries {
			return errorf("%s take %s of the %s that max_memory %s leaves for tables: too little for %s; raise max_memory to %s or lower them",
				strings.Join(names, ", "), FormatBytes(given), FormatBytes(avail), FormatBytes(budget), t.Setting, FormatBytes(b.forTables(need)))
		}
		*t.Size = int(min(n, maxTableSize))
	}
	return nil
}

// FormatBytes writes n in GiB or MiB when one divides it (1GiB, 256MiB),
// else in MiB with a fraction (168.5MiB), and small sizes in KiB or bytes.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<40 && n%(1<<40) == 0:
		return strconv.FormatInt(n>>40, 10) + "TiB"
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// sizes returns the detection tables' sizes: those c gives, and the others
// as DefaultMaxMemory sizes them, for an Engine whose caller did not size
// them itself.
func (c *Config) sizes() (Config, error) {
	s := *c
	flows := 0 // the caller's table, sized alike
	for _, t := range s.Tables(&flows)[1:] {
		if *t.Size == 0 {
			return s, FitMemory(Budget{Bytes: DefaultMaxMemory}, s.Tables(&flows))
		}
	}
	return s, nil
}

// defaultMaxFlows is the size of a flow table sized from DefaultMaxMemory
// with every other table at its default.
func defaultMaxFlows() int {
	var c Config
	flows := 0
	FitMemory(Budget{Bytes: DefaultMaxMemory}, c.Tables(&flows)) // the defaults fit: TestFitMemory
	return flows
}
