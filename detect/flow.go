package detect

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Default idle timeouts, in packet time, after which a flow starts afresh.
const (
	DefaultUDPIdle  = 60 * time.Second
	DefaultTCPIdle  = 300 * time.Second
	DefaultMaxFlows = 1_000_000
)

// FlowKey identifies a flow whichever way its packets travel: Lo is the
// smaller endpoint, so both directions map to one key.
type FlowKey struct {
	Lo, Hi netip.AddrPort
	Proto  uint8
}

// MakeFlowKey returns the canonical key of the packet's 5-tuple and whether
// the packet travels from Lo to Hi.
func MakeFlowKey(p *capture.Packet) (k FlowKey, fromLo bool) {
	a, b := p.SrcAddrPort(), p.DstAddrPort()
	if a.Compare(b) <= 0 {
		return FlowKey{Lo: a, Hi: b, Proto: p.Proto}, true
	}
	return FlowKey{Lo: b, Hi: a, Proto: p.Proto}, false
}

// Dir is a packet's direction within its flow.
type Dir uint8

const (
	// FromOrig is a packet sent by the flow's originator: the endpoint that
	// sent the first packet we saw.
	FromOrig Dir = 0
	// FromResp is a packet sent by the other endpoint.
	FromResp Dir = 1
)

// Flow is what we know of one 5-tuple. Counters are indexed by Dir.
type Flow struct {
	Key       FlowKey
	Orig      netip.AddrPort
	Packets   [2]uint64
	Bytes     [2]uint64
	FirstSeen time.Time
	LastSeen  time.Time
}

// FlowStats are the flow table's counters, under the names of EVE's stats
// event.
type FlowStats struct {
	Active    int    `json:"active"`    // flows in the table now (one-way and two-way)
	OneWay    int    `json:"one_way"`   // of which flows seen in one direction only
	Created   uint64 `json:"created"`   // flows started (new, or restarted after idle expiry)
	Promoted  uint64 `json:"promoted"`  // one-way flows that saw their first reply
	Expired   uint64 `json:"expired"`   // flows ended by idle timeout
	Evicted   uint64 `json:"evicted"`   // two-way flows pushed out by the size bound
	Forgotten uint64 `json:"forgotten"` // one-way flows pushed out by newer one-way flows
	Untracked uint64 `json:"untracked"` // packets no detector needs a flow for
}

// Add adds o's counters to s: the tables of several workers make one.
func (s *FlowStats) Add(o FlowStats) {
	s.Active += o.Active
	s.OneWay += o.OneWay
	s.Created += o.Created
	s.Promoted += o.Promoted
	s.Expired += o.Expired
	s.Evicted += o.Evicted
	s.Forgotten += o.Forgotten
	s.Untracked += o.Untracked
}

// FlowTable keeps per-flow state for the packets detection needs.
//
// Update accounts p to its flow and returns the flow and the packet's
// direction in it, or nil when the table does not track such packets. The
// returned *Flow is valid until the next Update. A FlowTable belongs to one
// worker goroutine: it has no lock.
type FlowTable interface {
	Update(p *capture.Packet) (*Flow, Dir)
	Stats() FlowStats
}

// Flows is a FlowTable for the TCP and UDP packets that touch one of its
// ports, in packet time, in two tiers:
//
//   - Flows seen in one direction only wait in a probation table: a fixed
//     array of small sets indexed by a hash of the key, where a new flow
//     takes the place of the oldest one of its set. It never allocates,
//     so the one-packet flows of a random-source flood cost a hash and a
//     cache line or two each, and push out only other one-way flows.
//   - A flow's first packet in the other direction promotes it, with its
//     counts, to an LRU (golang-lru's simplelru) bounded by MaxFlows: the
//     conversations that the loop and exposure detectors look at.
//
// Detection needs no more: a loop is traffic both ways, and an exposure is
// a reply on a flow whose request was seen. Both tiers expire flows idle
// for longer than their protocol's timeout.
type Flows struct {
	// The padding keeps the flows of two workers, written for every
	// packet and side by side on the heap, off each other's cache lines.
	_       [64]byte
	ports   *PortSet
	udpIdle time.Duration
	tcpIdle time.Duration
	probe   probation
	oneWay  Flow // what Update returns for a flow on probation
	lru     *simplelru.LRU[FlowKey, *Flow]
	// free holds evicted flows for reuse, so that a flow promoted into a
	// full table costs no allocation for its state.
	free  []*Flow
	stats FlowStats
	_     [64]byte
}

var _ FlowTable = (*Flows)(nil)

// FlowConfig configures a Flows table.
type FlowConfig struct {
	// MaxFlows bounds the two-way flows (default DefaultMaxFlows). The
	// one-way flows on probation are bounded apart, at MaxFlows/64
	// between 64 and 16384: a table of at most 1.3 MB, which stays in
	// the CPU's caches under a flood.
	MaxFlows int
	UDPIdle  time.Duration // default DefaultUDPIdle
	TCPIdle  time.Duration // default DefaultTCPIdle
	// Ports selects the packets worth a flow: those from or to one of them.
	Ports *PortSet
}

// NewFlows returns an empty flow table.
func NewFlows(cfg FlowConfig) (*Flows, error) {
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.UDPIdle == 0 {
		cfg.UDPIdle = DefaultUDPIdle
	}
	if cfg.TCPIdle == 0 {
		cfg.TCPIdle = DefaultTCPIdle
	}
	if cfg.Ports == nil {
		cfg.Ports = &PortSet{}
	}
	t := &Flows{ports: cfg.Ports, udpIdle: cfg.UDPIdle, tcpIdle: cfg.TCPIdle}
	l, err := simplelru.NewLRU[FlowKey, *Flow](cfg.MaxFlows, t.onEvict)
	if err != nil {
		return nil, errorf("flows: max flows %d: %w", cfg.MaxFlows, err)
	}
	t.lru = l
	t.probe.init(min(max(cfg.MaxFlows/64, 64), 1<<14))
	return t, nil
}

func (t *Flows) onEvict(_ FlowKey, f *Flow) {
	t.free = append(t.free, f)
}

func (t *Flows) idle(proto uint8) time.Duration {
	if proto == capture.ProtoTCP {
		return t.tcpIdle
	}
	return t.udpIdle
}

// Update implements FlowTable.
func (t *Flows) Update(p *capture.Packet) (*Flow, Dir) {
	if !p.HasPorts || (p.Proto != capture.ProtoUDP && p.Proto != capture.ProtoTCP) ||
		!(t.ports.Has(p.SrcPort) || t.ports.Has(p.DstPort)) {
		t.stats.Untracked++
		return nil, FromOrig
	}
	idle := t.idle(p.Proto)
	if t.lru.Len() > 0 {
		t.expireOldest(p.Timestamp)
	}
	k, _ := MakeFlowKey(p)
	src := p.SrcAddrPort()
	if f, ok := t.lru.Get(k); ok {
		if p.Timestamp.Sub(f.LastSeen) <= idle {
			return f, f.count(p, src)
		}
		// Idle for too long: it starts again on probation.
		t.lru.Remove(k)
		t.stats.Expired++
	}
	f := &t.oneWay
	s, i, found := t.probe.find(k, p.Timestamp, idle, &t.stats)
	if found {
		s.way[i].load(f, k)
	} else {
		*f = Flow{Key: k, Orig: src, FirstSeen: p.Timestamp}
		t.stats.Created++
	}
	dir := f.count(p, src)
	if dir == FromOrig {
		s.way[i].store(f)
		return f, dir
	}
	// The first reply: the flow is a conversation now.
	nf := t.newFlow(k)
	*nf = *f
	t.probe.free(s, i)
	t.stats.Promoted++
	return nf, dir
}

// count accounts p, sent by src, to f and returns its direction.
func (f *Flow) count(p *capture.Packet, src netip.AddrPort) Dir {
	dir := FromOrig
	if src != f.Orig {
		dir = FromResp
	}
	f.Packets[dir]++
	f.Bytes[dir] += uint64(p.Length)
	if p.Timestamp.After(f.LastSeen) {
		f.LastSeen = p.Timestamp
	}
	return dir
}

// newFlow adds k to the LRU with a recycled or new Flow.
func (t *Flows) newFlow(k FlowKey) *Flow {
	var f *Flow
	if n := len(t.free); n > 0 {
		f, t.free = t.free[n-1], t.free[:n-1]
	} else {
		f = new(Flow)
	}
	if t.lru.Add(k, f) {
		t.stats.Evicted++
	}
	// The eviction callback has put the evicted flow on the free list;
	// nothing refers to it any more.
	return f
}

// expireOldest removes a few two-way flows idle for longer than their
// timeout, so the table drains in packet time without a separate sweep.
func (t *Flows) expireOldest(now time.Time) {
	for range 2 {
		k, f, ok := t.lru.GetOldest()
		if !ok || now.Sub(f.LastSeen) <= t.idle(k.Proto) {
			return
		}
		t.lru.RemoveOldest()
		t.stats.Expired++
	}
}

// Stats implements FlowTable.
func (t *Flows) Stats() FlowStats {
	s := t.stats
	s.OneWay = t.probe.used
	s.Active = t.lru.Len() + s.OneWay
	return s
}

// probation holds the one-way flows in sets of probationWays, the set
// chosen by a hash of the key. A set keeps its flows' hash tags and
// last-seen times together in its first cache line, and each flow in one
// line of its own, without pointers: a lookup reads one or two lines, and
// the garbage collector never scans the table.
type probation struct {
	sets []probationSet
	mask uint64
	used int // flows held
}

const probationWays = 4

type probationSet struct {
	tag  [probationWays]uint32 // 0: the way is free
	last [probationWays]int64  // the flow's LastSeen, in Unix nanoseconds
	_    [16]byte              // the ways start on a cache line
	way  [probationWays]oneWayFlow
}

// oneWayFlow is a Flow with one direction's counters, in 64 bytes.
type oneWayFlow struct {
	lo, hi  [16]byte // the key's addresses, as 16 bytes
	loPort  uint16
	hiPort  uint16
	is4     bool // the addresses are IPv4
	origHi  bool // the originator is the key's Hi endpoint
	_       [2]byte
	packets uint32
	bytes   uint64
	first   int64 // FirstSeen, in Unix nanoseconds
}

// store keeps f, a one-way flow, in w.
func (w *oneWayFlow) store(f *Flow) {
	w.lo, w.hi = f.Key.Lo.Addr().As16(), f.Key.Hi.Addr().As16()
	w.loPort, w.hiPort = f.Key.Lo.Port(), f.Key.Hi.Port()
	w.is4 = f.Key.Lo.Addr().Is4()
	w.origHi = f.Orig != f.Key.Lo
	w.packets = uint32(min(f.Packets[FromOrig], 1<<32-1))
	w.bytes = f.Bytes[FromOrig]
	w.first = f.FirstSeen.UnixNano()
}

// load fills f with the flow of key k that w holds. Its last-seen time is
// its set's.
func (w *oneWayFlow) load(f *Flow, k FlowKey) {
	*f = Flow{Key: k, Orig: k.Lo, FirstSeen: time.Unix(0, w.first).UTC()}
	if w.origHi {
		f.Orig = k.Hi
	}
	f.Packets[FromOrig], f.Bytes[FromOrig] = uint64(w.packets), w.bytes
}

// matches reports whether w holds the flow of key k.
func (w *oneWayFlow) matches(k FlowKey) bool {
	return w.loPort == k.Lo.Port() && w.hiPort == k.Hi.Port() && w.is4 == k.Lo.Addr().Is4() &&
		w.lo == k.Lo.Addr().As16() && w.hi == k.Hi.Addr().As16()
}

// init sizes the table for about n flows.
func (pt *probation) init(n int) {
	sets := 1
	for sets*probationWays < n {
		sets <<= 1
	}
	pt.sets = make([]probationSet, sets)
	pt.mask = uint64(sets - 1)
}

// find returns the set and way of k's flow and true, or of the way where a
// new flow for k goes and false: a free way, or else the set's least
// recently seen flow, which is forgotten. A flow of k idle for longer than
// idle has expired and is started afresh in its way.
func (pt *probation) find(k FlowKey, now time.Time, idle time.Duration, st *FlowStats) (*probationSet, int, bool) {
	h := hashFlowKey(k)
	s := &pt.sets[h&pt.mask]
	tag := uint32(h>>32) | 1
	ns := now.UnixNano()
	free, oldest := -1, -1
	for i := range probationWays {
		switch {
		case s.tag[i] == 0:
			if free < 0 {
				free = i
			}
		case s.tag[i] == tag && s.way[i].matches(k):
			if ns-s.last[i] > int64(idle) {
				st.Expired++
				s.last[i] = ns
				return s, i, false
			}
			s.last[i] = max(s.last[i], ns)
			return s, i, true
		case oldest < 0 || s.last[i] < s.last[oldest]:
			oldest = i
		}
	}
	i := free
	if i >= 0 {
		pt.used++
	} else {
		i = oldest
		st.Forgotten++
	}
	s.tag[i], s.last[i] = tag, ns
	return s, i, false
}

// free empties a way whose flow was promoted.
func (pt *probation) free(s *probationSet, i int) {
	s.tag[i] = 0
	pt.used--
}

// hashFlowKey hashes a flow key for the probation table: each word times
// its own odd constant (independent multiplications, so they overlap in
// the CPU), folded and finished with one mix.
func hashFlowKey(k FlowKey) uint64 {
	lo, hi := k.Lo.Addr().As16(), k.Hi.Addr().As16()
	be := binary.BigEndian
	h := be.Uint64(lo[:8])*0x9e3779b97f4a7c15 ^ be.Uint64(lo[8:])*0xc2b2ae3d27d4eb4f ^
		be.Uint64(hi[:8])*0x165667b19e3779f9 ^ be.Uint64(hi[8:])*0xd6e8feb86659fd93 ^
		(uint64(k.Proto)<<32|uint64(k.Lo.Port())<<16|uint64(k.Hi.Port()))*0xff51afd7ed558ccd
	return mix(h)
}

// PortSet is a set of TCP/UDP ports, a bitmap so that a lookup costs one
// load.
type PortSet [65536 / 64]uint64

// NewPortSet returns the set of the given ports.
func NewPortSet(ports ...uint16) *PortSet {
	s := &PortSet{}
	for _, p := range ports {
		s.Add(p)
	}
	return s
}

// Add puts port in the set.
func (s *PortSet) Add(port uint16) { s[port>>6] |= 1 << (port & 63) }

// Has reports whether port is in the set.
func (s *PortSet) Has(port uint16) bool { return s[port>>6]&(1<<(port&63)) != 0 }

// portList is the few ports an incident names (the services a victim was
// hit from, the ports a scanner probed), sorted, in place: ports past
// the eighth are not listed.
type portList struct {
	p [8]uint16
	n int
}

// add puts port in the list, unless it is there or the list is full.
func (l *portList) add(port uint16) {
	i := 0
	for ; i < l.n && l.p[i] < port; i++ {
	}
	if (i < l.n && l.p[i] == port) || l.n == len(l.p) {
		return
	}
	copy(l.p[i+1:l.n+1], l.p[i:l.n])
	l.p[i] = port
	l.n++
}

// ports returns the list's ports, ascending.
func (l *portList) ports() []uint16 { return l.p[:l.n] }
