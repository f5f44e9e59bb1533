package detect

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Loop detects UDP service loops: two service ports of the loop set (echo,
// chargen, daytime, ...) answering each other in both directions, started
// by one forged packet and lasting until a packet is lost. It counts each
// direction over its window; the incident starts when both carry at least
// loop.packets. A packet of telemetry counts the share of what it stands
// for that falls in one window (see weight.within).
//
// Only flows seen both ways get an entry, so a one-way flood with forged
// sources never fills the table: the flow table bounds it. A flood of
// forged conversations (a packet each way, on new addresses) would; the
// admission sketch keeps it out, and the loops that last in.
type Loop struct {
	cfg     *LoopConfig
	r       *reporter
	watched PortSet // the loop set
	allow   prefixSet
	pairs   *table[pairKey, pair]
}

// pairKey is a loop's two endpoints, the smaller first, in their tenant.
type pairKey struct {
	a, b   netip.AddrPort
	tenant uint32
}

func (k pairKey) hash() uint64 {
	seed := seedPair ^ tenantSeed(k.tenant)
	return mix(hashAddr(k.a.Addr(), seed^uint64(k.a.Port())) + hashAddr(k.b.Addr(), seed^uint64(k.b.Port())<<16))
}

var _ detector = (*Loop)(nil)

func (d *Loop) info() kindInfo { return loopKind{} }

func (d *Loop) setup(sizes *Config, r *reporter) error {
	cfg := &sizes.Loop
	d.r = r
	var err error
	d.pairs, err = newTable("loop.pairs", cfg.MaxPairs, pairKey.hash, cfg.Window, func(p *pair) bool { return r.evicted(p) })
	return err
}

func (d *Loop) configure(c *Config, s *settings) {
	d.cfg, d.watched, d.allow = &c.Loop, s.loopPorts, s.allow[KindLoop]
}

func (d *Loop) wants() wanted {
	return wanted{from: &d.watched, to: &d.watched, both: true, loops: true}
}

func (d *Loop) tables(ts []TableStats) []TableStats { return append(ts, d.pairs.stats()) }

// packet takes the UDP packets between two ports of the loop set.
func (d *Loop) packet(pv *view) {
	if !pv.srcSvc || !pv.dstSvc {
		return
	}
	p, f, dir := pv.p, pv.f, pv.dir
	if d.allow.contains(p.Src) || d.allow.contains(p.Dst) {
		return
	}
	src, dst := p.SrcAddrPort(), p.DstAddrPort()
	k, fwd := pairKey{src, dst, p.Tenant}, 0
	if dst.Compare(src) < 0 {
		k, fwd = pairKey{dst, src, p.Tenant}, 1
	}
	now := p.Timestamp
	e := d.pairs.get(k)
	if e == nil {
		if f == nil || f.Packets[FromOrig] == 0 || f.Packets[FromResp] == 0 {
			return
		}
		if e, _ = d.pairs.getOrAdd(k, now); e == nil {
			return
		}
		*e = pair{d: d, k: k}
		e.seed(p, f, dir, fwd)
	}
	e.count(p, fwd)
	d.r.check(e, now)
}

// pair is the state of one endpoint pair.
type pair struct {
	d  *Loop
	k  pairKey
	t  track
	m  [2]meter // m[0] counts k.a → k.b
	np [2]uint64
	nb [2]uint64
}

var _ subject = (*pair)(nil)

// seed starts a new pair with what its flow counted before the packet that
// showed it both ways, when all of that lies within the window.
func (e *pair) seed(p *capture.Packet, f *Flow, dir Dir, fwd int) {
	w := e.d.cfg.Window
	if p.Timestamp.Sub(f.FirstSeen) > w {
		return
	}
	e.t.first = f.FirstSeen
	e.t.last = f.FirstSeen
	cur := weigh(p)
	for fd := FromOrig; fd <= FromResp; fd++ {
		pk, by := f.Packets[fd], f.Bytes[fd]
		if fd == dir { // the current packet is counted by count
			pk, by = pk-min(pk, cur.packets), by-min(by, cur.bytes)
		}
		side := fwd
		if fd != dir {
			side = 1 - fwd
		}
		// The flow keeps totals, not when its packets fell: its flow
		// records, if any, count whole here, even one longer than the
		// window.
		e.m[side].addN(p.Timestamp, w, pk, by)
		e.np[side] = sat(e.np[side], pk)
		e.nb[side] = sat(e.nb[side], by)
		e.t.packets = sat(e.t.packets, pk)
		e.t.bytes = sat(e.t.bytes, by)
	}
}

func (e *pair) count(p *capture.Packet, side int) {
	w := e.d.cfg.Window
	if e.t.fresh(p.Timestamp, w) {
		e.reset()
	}
	e.d.r.see(&e.t, p, w)
	wt := weigh(p)
	e.m[side].add(p.Timestamp, w, wt)
	e.np[side] = sat(e.np[side], wt.packets)
	e.nb[side] = sat(e.nb[side], wt.bytes)
}

func (e *pair) lifecycle() *track { return &e.t }
func (e *pair) kind() Kind        { return KindLoop }
func (e *pair) key() string       { return withTenant(e.k.a.String()+"-"+e.k.b.String(), e.k.tenant) }

func (e *pair) measure(now time.Time) (bool, float64, float64) {
	w := e.d.cfg.Window
	e.m[0].advance(now, w)
	e.m[1].advance(now, w)
	need := uint64(e.d.cfg.Packets)
	above := e.m[0].sumP >= need && e.m[1].sumP >= need
	p0, b0 := e.m[0].rate(w)
	p1, b1 := e.m[1].rate(w)
	return above, p0 + p1, b0 + b1
}

func (e *pair) reset() {
	e.np, e.nb = [2]uint64{}, [2]uint64{}
}

func (e *pair) describe(a *Alert) {
	w := e.d.cfg.Window
	in := &a.Incident
	a.Src, a.Dst, a.Proto, a.Tenant = e.k.a, e.k.b, capture.ProtoUDP, e.k.tenant
	a.CommunityID = CommunityID(e.k.a, e.k.b, capture.ProtoUDP)
	a.Signature = sig(SIDLoop)
	in.Endpoints = [2]netip.AddrPort{e.k.a, e.k.b}
	for i := range in.Directions {
		pps, bps := e.m[i].rate(w)
		in.Directions[i] = DirectionRate{Packets: e.np[i], Bytes: e.nb[i], PPS: pps, BPS: bps}
	}
	in.Direction = e.d.r.direction(e.k.a.Addr(), e.k.b.Addr())
}

// loopKind describes service loops to the renderers.
type loopKind struct{}

func (loopKind) kind() Kind   { return KindLoop }
func (loopKind) name() string { return "loop" }

// sides: both endpoints suffer a loop; the alert's first is its source.
func (loopKind) sides(a *Alert) (source, target netip.AddrPort) { return a.Src, a.Dst }

func (loopKind) key(a *Alert) string {
	return a.Incident.Endpoints[0].String() + "-" + a.Incident.Endpoints[1].String()
}

func (loopKind) appendEVE(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, `,"endpoints":[`...)
	b = appendJSONString(b, in.Endpoints[0].String())
	b = append(b, ',')
	b = appendJSONString(b, in.Endpoints[1].String())
	b = append(b, `],"directions":[`...)
	for i, d := range in.Directions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"from":`...)
		b = appendJSONString(b, in.Endpoints[i].String())
		b = append(b, `,"to":`...)
		b = appendJSONString(b, in.Endpoints[1-i].String())
		b = appendUintField(b, "packets", d.Packets)
		b = appendUintField(b, "bytes", d.Bytes)
		b = appendRateField(b, "pps", d.PPS)
		b = appendRateField(b, "bps", d.BPS)
		b = append(b, '}')
	}
	return append(b, ']')
}

func (loopKind) appendText(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, "service loop "...)
	b = append(b, in.Phase.String()...)
	b = append(b, ' ')
	b = append(b, in.Endpoints[0].String()...)
	b = append(b, " <-> "...)
	b = append(b, in.Endpoints[1].String()...)
	b = append(b, " ("...)
	b = appendRate(b, in.Directions[0].PPS)
	b = append(b, " / "...)
	b = appendRate(b, in.Directions[1].PPS)
	b = append(b, " pps each way)"...)
	return appendRatesText(b, in)
}

func (loopKind) headline(a *Alert) Headline {
	ep := a.Incident.Endpoints
	return Headline{
		Detail:    "ports " + strconv.Itoa(int(ep[0].Port())) + " <-> " + strconv.Itoa(int(ep[1].Port())),
		Endpoints: []string{ep[0].String(), ep[1].String()},
	}
}
