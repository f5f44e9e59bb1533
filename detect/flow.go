package detect

import (
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

// FlowStats are the flow table's counters.
type FlowStats struct {
	Active    int    // flows in the table now
	Created   uint64 // flows started (new, or restarted after idle expiry)
	Expired   uint64 // flows ended by idle timeout
	Evicted   uint64 // flows pushed out by the size bound
	Untracked uint64 // packets no detector needs a flow for
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

// LRUFlows is a FlowTable bounded by a count of flows with
// least-recently-used eviction and idle expiry in packet time. It tracks
// TCP and UDP packets that touch one of its ports.
type LRUFlows struct {
	ports   *PortSet
	udpIdle time.Duration
	tcpIdle time.Duration
	lru     *simplelru.LRU[FlowKey, *Flow]
	// free holds evicted flows for reuse, so that a new flow in a full
	// table costs no allocation for its state.
	free  []*Flow
	stats FlowStats
}

var _ FlowTable = (*LRUFlows)(nil)

// FlowConfig configures an LRUFlows.
type FlowConfig struct {
	MaxFlows int           // bound on tracked flows (default DefaultMaxFlows)
	UDPIdle  time.Duration // default DefaultUDPIdle
	TCPIdle  time.Duration // default DefaultTCPIdle
	// Ports selects the packets worth a flow: those from or to one of them.
	Ports *PortSet
}

// NewLRUFlows returns an empty flow table.
func NewLRUFlows(cfg FlowConfig) (*LRUFlows, error) {
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
	t := &LRUFlows{ports: cfg.Ports, udpIdle: cfg.UDPIdle, tcpIdle: cfg.TCPIdle}
	l, err := simplelru.NewLRU[FlowKey, *Flow](cfg.MaxFlows, t.onEvict)
	if err != nil {
		return nil, errorf("flows: max flows %d: %w", cfg.MaxFlows, err)
	}
	t.lru = l
	return t, nil
}

func (t *LRUFlows) onEvict(_ FlowKey, f *Flow) {
	t.free = append(t.free, f)
}

func (t *LRUFlows) idle(proto uint8) time.Duration {
	if proto == capture.ProtoTCP {
		return t.tcpIdle
	}
	return t.udpIdle
}

// Update implements FlowTable.
func (t *LRUFlows) Update(p *capture.Packet) (*Flow, Dir) {
	if !p.HasPorts || (p.Proto != capture.ProtoUDP && p.Proto != capture.ProtoTCP) ||
		!(t.ports.Has(p.SrcPort) || t.ports.Has(p.DstPort)) {
		t.stats.Untracked++
		return nil, FromOrig
	}
	t.expireOldest(p.Timestamp)
	k, _ := MakeFlowKey(p)
	src := p.SrcAddrPort()
	f, ok := t.lru.Get(k)
	if ok && p.Timestamp.Sub(f.LastSeen) > t.idle(p.Proto) {
		t.stats.Expired++
		ok = false
	}
	if !ok {
		if f == nil {
			f = t.newFlow(k)
		}
		*f = Flow{Key: k, Orig: src, FirstSeen: p.Timestamp}
		t.stats.Created++
	}
	dir := FromOrig
	if src != f.Orig {
		dir = FromResp
	}
	f.Packets[dir]++
	f.Bytes[dir] += uint64(p.Length)
	if p.Timestamp.After(f.LastSeen) {
		f.LastSeen = p.Timestamp
	}
	return f, dir
}

// newFlow adds k to the table with a recycled or new Flow.
func (t *LRUFlows) newFlow(k FlowKey) *Flow {
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

// expireOldest removes a few flows idle for longer than their timeout, so
// the table drains in packet time without a separate sweep.
func (t *LRUFlows) expireOldest(now time.Time) {
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
func (t *LRUFlows) Stats() FlowStats {
	s := t.stats
	s.Active = t.lru.Len()
	return s
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
