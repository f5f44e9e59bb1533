package detect

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Default idle timeouts, in packet time, after which a flow starts afresh.
const (
	DefaultUDPIdle = 60 * time.Second
	DefaultTCPIdle = 300 * time.Second
)

// FlowKey identifies a flow whichever way its packets travel: Lo is the
// smaller endpoint, so both directions map to one key. Tenant is the
// packet's (capture.Packet.Tenant): one 5-tuple in two tenants is two
// flows.
type FlowKey struct {
	Lo, Hi netip.AddrPort
	Proto  uint8
	Tenant uint32
}

// MakeFlowKey returns the canonical key of the packet's 5-tuple and whether
// the packet travels from Lo to Hi.
func MakeFlowKey(p *capture.Packet) (k FlowKey, fromLo bool) {
	a, b := p.SrcAddrPort(), p.DstAddrPort()
	if a.Compare(b) <= 0 {
		return FlowKey{Lo: a, Hi: b, Proto: p.Proto, Tenant: p.Tenant}, true
	}
	return FlowKey{Lo: b, Hi: a, Proto: p.Proto, Tenant: p.Tenant}, false
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

// Flow is what we know of one 5-tuple. Counters are indexed by Dir; a
// packet of router telemetry counts what it stands for (its flow record's
// packets and bytes, or a sample's, the sampling rate applied), whole.
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
//     counts, to an LRU bounded by MaxFlows: the conversations that the
//     loop and exposed detectors look at. A flow there is FlowEntryBytes
//     bytes without a pointer (its addresses as 16 bytes, its times as
//     Unix nanoseconds), so a table of a million costs about 100 MiB and
//     nothing for the garbage collector to scan.
//
// Detection needs no more: a loop is traffic both ways, and an exposed
// service is a reply on a flow whose request was seen. Both tiers expire
// flows idle for longer than their protocol's timeout.
type Flows struct {
	// The padding keeps the flows of two workers, written for every
	// packet and side by side on the heap, off each other's cache lines.
	_       [64]byte
	ports   *PortSet
	udpIdle time.Duration
	tcpIdle time.Duration
	probe   probation
	oneWay  Flow // what Update returns for a flow on probation
	lru     *lru[flowKey, flowState]
	cur     Flow    // what Update returns for a two-way flow
	key     flowKey // the key of the packet being accounted
	stats   FlowStats
	_       [64]byte
}

var _ FlowTable = (*Flows)(nil)

// flowKey is a FlowKey in 42 bytes without a pointer: the addresses as
// 16 bytes (IPv4 as IPv4-mapped), the tenant (as bytes, so that the key
// stays 2-byte aligned and packs with what follows it), whether the
// addresses are IPv4, and the ports.
type flowKey struct {
	lo, hi         [16]byte
	tenant         [4]byte
	loPort, hiPort uint16
	proto          uint8
	is4            bool
}

// flowState is the rest of a two-way flow, in 48 bytes. Its packet
// counts stop at 2^32-1, as a one-way flow's do: no detector needs more,
// and so a flow, its tenant in its key, still takes FlowEntryBytes.
type flowState struct {
	packets     [2]uint32
	bytes       [2]uint64
	first, last int64 // Unix nanoseconds
	origHi      bool  // the originator is the key's Hi endpoint
}

// makeKey sets k to the compact key of the packet's 5-tuple and returns
// whether the packet travels from Lo to Hi: the order of MakeFlowKey. (The
// key is the caller's, and goes by pointer from there: copies of its 42
// bytes cost a flood more than the look-ups.)
func makeKey(p *capture.Packet, k *flowKey) (fromLo bool) {
	src, dst := p.Src.As16(), p.Dst.As16()
	sport, dport := p.SrcPort, p.DstPort
	if p.Src.BitLen() == p.Dst.BitLen() {
		// One family, as in any IP header: AddrPort.Compare's order is
		// that of the 16 bytes, then the port, read as words.
		be := binary.BigEndian
		s0, s1, d0, d1 := be.Uint64(src[:8]), be.Uint64(src[8:]), be.Uint64(dst[:8]), be.Uint64(dst[8:])
		fromLo = s0 < d0 || s0 == d0 && (s1 < d1 || s1 == d1 && sport <= dport)
	} else {
		fromLo = p.SrcAddrPort().Compare(p.DstAddrPort()) <= 0
	}
	if !fromLo {
		src, dst, sport, dport = dst, src, dport, sport
	}
	k.lo, k.hi, k.tenant = src, dst, tenantBytes(p.Tenant)
	k.loPort, k.hiPort, k.proto, k.is4 = sport, dport, p.Proto, p.Src.Is4()
	return fromLo
}

// addr returns an address of the key in its family.
func (k *flowKey) addr(b *[16]byte) netip.Addr {
	if k.is4 {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(*b)
}

// FlowKey returns k as a FlowKey.
func (k *flowKey) FlowKey() FlowKey {
	return FlowKey{Lo: netip.AddrPortFrom(k.addr(&k.lo), k.loPort),
		Hi: netip.AddrPortFrom(k.addr(&k.hi), k.hiPort), Proto: k.proto, Tenant: binary.LittleEndian.Uint32(k.tenant[:])}
}

// FlowConfig configures a Flows table.
type FlowConfig struct {
	// MaxFlows bounds the two-way flows (default: as DefaultMaxMemory
	// sizes it, see FitMemory). The
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
		cfg.MaxFlows = defaultMaxFlows()
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
	l, err := newLRU(cfg.MaxFlows, hashFlowKey, func(*flowKey, *flowState) { t.stats.Evicted++ })
	if err != nil {
		return nil, errorf("flows: max flows: %w", err)
	}
	t.lru = l
	t.probe.init(min(max(cfg.MaxFlows/64, 64), 1<<14))
	return t, nil
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
	now := p.Timestamp.UnixNano()
	if t.lru.len() > 0 {
		t.expireOldest(now)
	}
	k := &t.key // the table's: a local would escape through the LRU's hash
	fromLo := makeKey(p, k)
	h := hashFlowKey(k)
	if s := t.lru.get(k, h); s != nil {
		if now-s.last <= int64(idle) {
			dir := s.count(p, fromLo, now)
			s.load(&t.cur, k)
			return &t.cur, dir
		}
		// Idle for too long: it starts again on probation.
		t.lru.remove(k, h)
		t.stats.Expired++
	}
	f := &t.oneWay
	set, i, found := t.probe.find(k, h, now, idle, &t.stats)
	if found {
		set.way[i].load(f, k)
	} else {
		*f = Flow{Key: k.FlowKey(), FirstSeen: p.Timestamp}
		f.Orig = p.SrcAddrPort()
		t.stats.Created++
	}
	dir := f.count(p)
	if dir == FromOrig {
		set.way[i].store(f, k, fromLo)
		return f, dir
	}
	// The first reply: the flow is a conversation now.
	s := t.lru.add(k, h)
	// The reply came from Lo when the originator is Hi.
	*s = flowState{packets: [2]uint32{count32(f.Packets[0]), count32(f.Packets[1])}, bytes: f.Bytes,
		first: f.FirstSeen.UnixNano(), last: f.LastSeen.UnixNano(), origHi: fromLo}
	t.probe.free(set, i)
	t.stats.Promoted++
	s.load(&t.cur, k)
	return &t.cur, dir
}

// count accounts p, sent by the key's Lo endpoint if fromLo, to s and
// returns its direction.
func (s *flowState) count(p *capture.Packet, fromLo bool, now int64) Dir {
	dir := FromOrig
	if fromLo == s.origHi {
		dir = FromResp
	}
	w := weigh(p)
	s.packets[dir] = count32(sat(uint64(s.packets[dir]), w.packets))
	s.bytes[dir] = sat(s.bytes[dir], w.bytes)
	s.last = max(s.last, now)
	return dir
}

// count32 is a packet count as a flow keeps it.
func count32(n uint64) uint32 { return uint32(min(n, 1<<32-1)) }

// tenantBytes is a flow key's tenant: little endian, one store on the
// machines we run on.
func tenantBytes(v uint32) (b [4]byte) {
	binary.LittleEndian.PutUint32(b[:], v)
	return b
}

// load fills f with the flow of key k that s holds.
func (s *flowState) load(f *Flow, k *flowKey) {
	f.Key = k.FlowKey()
	f.Orig = f.Key.Lo
	if s.origHi {
		f.Orig = f.Key.Hi
	}
	f.Packets, f.Bytes = [2]uint64{uint64(s.packets[0]), uint64(s.packets[1])}, s.bytes
	f.FirstSeen, f.LastSeen = time.Unix(0, s.first).UTC(), time.Unix(0, s.last).UTC()
}

// count accounts p to f, a one-way flow, and returns its direction.
func (f *Flow) count(p *capture.Packet) Dir {
	dir := FromOrig
	if p.SrcAddrPort() != f.Orig {
		dir = FromResp
	}
	w := weigh(p)
	f.Packets[dir] = sat(f.Packets[dir], w.packets)
	f.Bytes[dir] = sat(f.Bytes[dir], w.bytes)
	if p.Timestamp.After(f.LastSeen) {
		f.LastSeen = p.Timestamp
	}
	return dir
}

// expireOldest removes a few two-way flows idle for longer than their
// timeout, so the table drains in packet time without a separate sweep.
func (t *Flows) expireOldest(now int64) {
	for range 2 {
		k, s := t.lru.oldest()
		if k == nil || now-s.last <= int64(t.idle(k.proto)) {
			return
		}
		t.lru.remove(k, hashFlowKey(k))
		t.stats.Expired++
	}
}

// Stats implements FlowTable.
func (t *Flows) Stats() FlowStats {
	s := t.stats
	s.OneWay = t.probe.used
	s.Active = t.lru.len() + s.OneWay
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
	key     flowKey
	origHi  bool // the originator is the key's Hi endpoint
	_       byte
	packets uint32
	bytes   uint64
	first   int64 // FirstSeen, in Unix nanoseconds
}

// store keeps f, a one-way flow of key k whose first packet came from the
// key's Lo endpoint if fromLo, in w.
func (w *oneWayFlow) store(f *Flow, k *flowKey, fromLo bool) {
	w.key = *k
	w.origHi = !fromLo
	w.packets = count32(f.Packets[FromOrig])
	w.bytes = f.Bytes[FromOrig]
	w.first = f.FirstSeen.UnixNano()
}

// load fills f with the flow of key k that w holds. Its last-seen time is
// its set's.
func (w *oneWayFlow) load(f *Flow, k *flowKey) {
	*f = Flow{Key: k.FlowKey(), FirstSeen: time.Unix(0, w.first).UTC()}
	f.Orig = f.Key.Lo
	if w.origHi {
		f.Orig = f.Key.Hi
	}
	f.Packets[FromOrig], f.Bytes[FromOrig] = uint64(w.packets), w.bytes
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
// idle has expired and is started afresh in its way. h is k's hash; now
// is in Unix nanoseconds.
func (pt *probation) find(k *flowKey, h uint64, now int64, idle time.Duration, st *FlowStats) (*probationSet, int, bool) {
	s := &pt.sets[h&pt.mask]
	tag := uint32(h>>32) | 1
	free, oldest := -1, -1
	for i := range probationWays {
		switch {
		case s.tag[i] == 0:
			if free < 0 {
				free = i
			}
		case s.tag[i] == tag && s.way[i].key == *k:
			if now-s.last[i] > int64(idle) {
				st.Expired++
				s.last[i] = now
				return s, i, false
			}
			s.last[i] = max(s.last[i], now)
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
	s.tag[i], s.last[i] = tag, now
	return s, i, false
}

// free empties a way whose flow was promoted.
func (pt *probation) free(s *probationSet, i int) {
	s.tag[i] = 0
	pt.used--
}

// hashFlowKey hashes a flow key: each word times its own odd constant
// (independent multiplications, so they overlap in the CPU), folded and
// finished with one mix.
func hashFlowKey(k *flowKey) uint64 {
	be := binary.BigEndian
	// The tenant goes in with the word it leaves unchanged when 0.
	t := uint64(binary.LittleEndian.Uint32(k.tenant[:]))
	h := (be.Uint64(k.lo[:8])^t)*0x9e3779b97f4a7c15 ^ be.Uint64(k.lo[8:])*0xc2b2ae3d27d4eb4f ^
		be.Uint64(k.hi[:8])*0x165667b19e3779f9 ^ be.Uint64(k.hi[8:])*0xd6e8feb86659fd93 ^
		(uint64(k.proto)<<32|uint64(k.loPort)<<16|uint64(k.hiPort))*0xff51afd7ed558ccd
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
