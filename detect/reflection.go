package detect

import (
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Reflection detects reflection off the small services (echo, daytime,
// qotd, chargen, time: those that answer any datagram): UDP from a service
// port toward a victim, seen as the replies reaching the victim and/or as the
// forged requests (source = victim) entering reflectors we can see. One
// incident per victim, whatever mix of services and reflectors hits it.
//
// The same measure summed over the victim's /24 (IPv4) or /64 (IPv6)
// raises a prefix-wide incident when the traffic is spread over several
// hosts so thinly that none crosses the threshold (carpet bombing). Traffic
// to a host with its own incident does not count toward its prefix: when
// a host incident opens, the host's window is taken out of its prefix's.
// And since a sum crosses the threshold before its parts do, a prefix
// incident also waits for a full window of activity, by which time hosts
// hot enough for their own incidents have them.
//
// A sweep looks like forged requests too: a scanner sends one or two
// probes to each of many hosts, which answer once each. Reflection reuses
// its reflectors, so an incident needs, besides the rate, at least
// minPacketsPerReflector packets per distinct reflector.
//
// An alert names the services its incident saw, in port order, in its
// signature text, advice and text line ("qotd reflection").
type Reflection struct {
	cfg      *ReflectionConfig
	r        *reporter
	watched  PortSet // the reflecting services
	allow    prefixSet
	hosts    *table[victimKey, victim]
	prefixes *table[victimKey, victim] // nil when both prefix lengths are 0
	// slots is what the victims' tallies grow into past their first few
	// reflectors (and hosts, for a prefix), of slotsTotal.
	slots      slotPool
	slotsTotal int
	// named holds the signatures naming each set of services seen, made
	// on first use; never more than maxNamed, forgotten all at once.
	named map[namedKey]*Signature
}

const minPacketsPerReflector = 3

// maxNamed bounds Reflection.named: a set of services is a subset of the
// configured ports, so a sensor watching many could see many.
const maxNamed = 64

// namedKey is a reflection signature and the services it names.
type namedKey struct {
	sid uint32
	svc portList
}

// victimKey is a victim address (a /32 or /128) or prefix in its tenant:
// a netip.Prefix taken apart, so that the tenant fits in its padding.
type victimKey struct {
	addr   netip.Addr
	tenant uint32
	bits   uint8
}

func victimOf(pfx netip.Prefix, tenant uint32) victimKey {
	return victimKey{pfx.Addr(), tenant, uint8(pfx.Bits())}
}

// The tables' hashes, which the admission sketch uses too.
func hashVictim(k victimKey) uint64 {
	return hashAddr(k.addr, seedVictim^tenantSeed(k.tenant))
}

func hashPrefix(k victimKey) uint64 {
	return hashAddr(k.addr, (seedPrefix+uint64(k.bits))^tenantSeed(k.tenant))
}

var _ detector = (*Reflection)(nil)

func (d *Reflection) info() kindInfo { return reflectionKind{} }

func (d *Reflection) setup(sizes *Config, r *reporter) error {
	cfg := &sizes.Reflection
	d.r = r
	d.named = make(map[namedKey]*Signature)
	d.slotsTotal = cfg.MaxVictims * reflectorSlotsPerVictim
	d.slots = slotPool{left: d.slotsTotal}
	onEvict := func(v *victim) bool {
		if r.evicted(v) {
			return true
		}
		// Dropped, not reused: its tallies go with it.
		d.slots.left += v.refl.held() + v.hosts.held()
		return false
	}
	var err error
	if d.hosts, err = newTable("reflection.victims", cfg.MaxVictims, hashVictim, cfg.Window, onEvict); err != nil {
		return err
	}
	if cfg.PrefixV4 > 0 || cfg.PrefixV6 > 0 {
		d.prefixes, err = newTable("reflection.prefixes", cfg.MaxVictims, hashPrefix, cfg.Window, onEvict)
	}
	return err
}

func (d *Reflection) configure(c *Config, s *settings) {
	d.cfg, d.watched, d.allow = &c.Reflection, s.reflPorts, s.allow[KindReflection]
}

func (d *Reflection) wants() wanted { return wanted{from: &d.watched, to: &d.watched} }

func (d *Reflection) tables(ts []TableStats) []TableStats {
	ts = append(ts, d.hosts.stats())
	if d.prefixes != nil {
		ts = append(ts, d.prefixes.stats())
	}
	return append(ts, d.slotStats())
}

// slotStats describes the reflector slots as a table: the slots taken, the
// pool, and the growths refused for want of slots.
func (d *Reflection) slotStats() TableStats {
	return TableStats{Name: "reflection.reflectors", Len: d.slotsTotal - d.slots.left, Cap: d.slotsTotal,
		Rejected: d.slots.refused}
}

// packet takes the UDP packets that are not service-to-service.
func (d *Reflection) packet(pv *view) {
	p := pv.p
	if p.Proto != capture.ProtoUDP {
		return
	}
	var vic netip.Addr
	var refl netip.AddrPort
	var request bool
	switch {
	case d.watched.Has(p.SrcPort) && !pv.dstSvc: // a reply toward the victim
		vic, refl = p.Dst, p.SrcAddrPort()
	case d.watched.Has(p.DstPort) && !pv.srcSvc: // a request from the victim
		if isNmapProbe(p) {
			return
		}
		vic, refl, request = p.Src, p.DstAddrPort(), true
	default:
		return
	}
	// A forged "victim" (the bogon source of a request, a land packet, a
	// reply toward an address that is never a source) is the spoofed-flood
	// detector's evidence, not a victim.
	if (request && pv.forged() != forgedNot) || p.Src == p.Dst || classify(vic) == srcBogon {
		return
	}
	if d.allow.contains(p.Src) || d.allow.contains(p.Dst) {
		return
	}
	now := p.Timestamp
	hostOpen := false
	k := victimOf(netip.PrefixFrom(vic, vic.BitLen()), p.Tenant)
	if v, made := d.hosts.getOrAdd(k, now); v != nil {
		if made {
			v.init(d, k, false)
		}
		wasOpen := v.t.open
		v.count(p, vic, refl, request)
		d.r.check(v, now)
		hostOpen = v.t.open
		if hostOpen && !wasOpen {
			d.discount(v, now)
		}
	}
	if hostOpen {
		return
	}
	pfx, ok := d.prefixOf(vic)
	if !ok {
		return
	}
	k = victimOf(pfx, p.Tenant)
	if v, made := d.prefixes.getOrAdd(k, now); v != nil {
		if made {
			v.init(d, k, true)
		}
		v.count(p, vic, refl, request)
		d.r.check(v, now)
	}
}

// prefixOf returns the carpet-bombing prefix of a victim address, or false
// when prefixes are off for its family.
func (d *Reflection) prefixOf(a netip.Addr) (netip.Prefix, bool) {
	n := d.cfg.PrefixV4
	if a.Is6() {
		n = d.cfg.PrefixV6
	}
	if d.prefixes == nil || n == 0 {
		return netip.Prefix{}, false
	}
	p, _ := a.Prefix(n)
	return p, true
}

// discount takes a host that just opened its own incident out of its
// prefix.
func (d *Reflection) discount(h *victim, now time.Time) {
	pfx, ok := d.prefixOf(h.pfx.Addr())
	if !ok {
		return
	}
	v := d.prefixes.get(victimOf(pfx, h.tenant))
	if v == nil || v.t.open {
		return
	}
	w := d.cfg.Window
	v.req.advance(now, w)
	v.rep.advance(now, w)
	v.req.subtract(&h.req)
	v.rep.subtract(&h.rep)
	sub := func(x *uint64, y uint64) { *x -= min(*x, y) }
	sub(&v.reqP, h.reqP)
	sub(&v.repP, h.repP)
	sub(&v.reqB, h.reqB)
	sub(&v.repB, h.repB)
	sub(&v.t.packets, h.t.packets)
	sub(&v.t.bytes, h.t.bytes)
	v.hosts.remove(h.pfx.Addr())
	if a := h.pfx.Addr(); a.Is4() {
		o := a.As4()[3]
		v.octets[o>>6] &^= 1 << (o & 63)
	}
}

// victim is the state of one victim address or prefix.
type victim struct {
	d        *Reflection
	pfx      netip.Prefix
	tenant   uint32
	isPrefix bool
	// port is the victim's port in this activity's packets (0: none yet),
	// unless ports says it used more than one; beside isPrefix, they take
	// what would be padding.
	ports bool
	port  uint16
	t     track
	// The two sides of the evidence. When both are seen (forged requests
	// into our reflectors and their replies) they are the same attack, so
	// the measure is the larger side, never the sum.
	req, rep   meter
	reqP, repP uint64 // packets of each side in this activity
	reqB, repB uint64
	refl       tally
	svc        portList  // service ports seen
	hosts      tally     // prefix: the hosts hit
	octets     [4]uint64 // IPv4 prefix of /24 or longer: the hosts hit, exactly
}

var _ subject = (*victim)(nil)

// init makes v a fresh entry, keeping the buffers of a reused one: its
// tallies' tables and HyperLogLogs, which hold slots of the pool.
func (v *victim) init(d *Reflection, k victimKey, isPrefix bool) {
	refl, hosts := v.refl, v.hosts
	*v = victim{d: d, pfx: netip.PrefixFrom(k.addr, int(k.bits)), tenant: k.tenant, isPrefix: isPrefix}
	v.refl.tab, v.refl.extra = refl.tab, refl.extra
	v.hosts.tab, v.hosts.extra = hosts.tab, hosts.extra
	v.refl.reset()
	v.hosts.reset()
}

func (v *victim) count(p *capture.Packet, vic netip.Addr, refl netip.AddrPort, request bool) {
	w := v.d.cfg.Window
	if v.t.fresh(p.Timestamp, w) {
		v.reset()
	}
	v.d.r.see(&v.t, p, w)
	wt := weigh(p)
	if request {
		v.req.add(p.Timestamp, w, wt)
		v.reqP = sat(v.reqP, wt.packets)
		v.reqB = sat(v.reqB, wt.bytes)
	} else {
		v.rep.add(p.Timestamp, w, wt)
		v.repP = sat(v.repP, wt.packets)
		v.repB = sat(v.repB, wt.bytes)
	}
	v.refl.add(refl, wt, &v.d.slots)
	v.svc.add(refl.Port())
	vp := p.DstPort
	if request {
		vp = p.SrcPort
	}
	if v.port == 0 {
		v.port = vp
	} else if vp != v.port {
		v.ports = true
	}
	if v.isPrefix {
		v.hosts.add(netip.AddrPortFrom(vic, 0), wt, &v.d.slots)
		if vic.Is4() {
			o := vic.As4()[3]
			v.octets[o>>6] |= 1 << (o & 63)
		}
	}
}

// spread reports whether a prefix's traffic is spread over its hosts: no
// host carries half of it. A single hot host is a host incident, and its
// traffic counts here only until that incident opens.
func (v *victim) spread() bool {
	return v.hostCount() >= 2 && v.hosts.top*2 <= v.t.packets
}

// hostCount returns the distinct hosts a prefix's traffic hit: exact for
// an IPv4 /24 or longer, whatever its size.
func (v *victim) hostCount() int {
	if !v.pfx.Addr().Is4() || v.pfx.Bits() < 24 {
		return v.hosts.count()
	}
	n := 0
	for _, w := range v.octets {
		n += bits.OnesCount64(w)
	}
	return n
}

func (v *victim) lifecycle() *track { return &v.t }
func (v *victim) kind() Kind        { return KindReflection }

func (v *victim) key() string {
	if v.isPrefix {
		return withTenant(v.pfx.String(), v.tenant)
	}
	return withTenant(v.pfx.Addr().String(), v.tenant)
}

func (v *victim) measure(now time.Time) (bool, float64, float64) {
	cfg := v.d.cfg
	v.req.advance(now, cfg.Window)
	v.rep.advance(now, cfg.Window)
	qpps, qbps := v.req.rate(cfg.Window)
	ppps, pbps := v.rep.rate(cfg.Window)
	pps, bps := max(qpps, ppps), max(qbps, pbps)
	above := (pps >= cfg.PPS || bps >= cfg.BPS) &&
		max(v.reqP, v.repP) >= minPacketsPerReflector*uint64(v.refl.count()) &&
		(!v.isPrefix || (now.Sub(v.t.first) >= cfg.Window && v.spread()))
	return above, pps, bps
}

func (v *victim) reset() {
	v.reqP, v.repP, v.reqB, v.repB = 0, 0, 0, 0
	v.port, v.ports = 0, false
	v.refl.reset()
	v.svc = portList{}
	v.hosts.reset()
	v.octets = [4]uint64{}
}

func (v *victim) describe(a *Alert) {
	r := v.d.r
	in := &a.Incident
	r.refl = v.refl.sorted(r.refl)
	top := r.refl[:min(len(r.refl), 10)]
	for _, x := range top {
		in.Reflectors = append(in.Reflectors, Reflector{Addr: x.addr, Port: x.port, Packets: x.packets, Bytes: x.bytes})
	}
	if len(top) > 0 {
		a.Src = netip.AddrPortFrom(top[0].addr, top[0].port)
	}
	a.Dst = netip.AddrPortFrom(v.pfx.Addr(), 0)
	a.Proto, a.Tenant = capture.ProtoUDP, v.tenant
	in.Victim = v.pfx
	in.ReflectorCount = v.refl.count()
	for _, port := range v.svc.ports() {
		in.Services = append(in.Services, serviceName(port))
	}
	// The larger side is the attack's size (see victim).
	if v.reqP > v.repP {
		in.Packets, in.Bytes = v.reqP, v.reqB
	} else {
		in.Packets, in.Bytes = v.repP, v.repB
	}
	// A victim hit on one port has it as dest_port; when one reflector
	// carries most of it too, the alert is about that flow.
	if !v.isPrefix && v.port != 0 && !v.ports {
		a.Dst = netip.AddrPortFrom(v.pfx.Addr(), v.port)
		if len(top) > 0 && 2*top[0].packets > v.reqP+v.repP {
			a.CommunityID = CommunityID(a.Src, a.Dst, capture.ProtoUDP)
		}
	}
	in.Direction = r.direction(a.Src.Addr(), v.pfx.Addr())
	d := v.d
	switch {
	case v.isPrefix:
		in.Hosts = v.hostCount()
		a.Signature = d.signature(SIDReflectionPrefix, &v.svc)
		if in.Direction == "outbound" {
			a.Severity = 1
			in.Advice = d.signature(SIDReflectionOutbound, &v.svc).Advice
		}
	case in.Direction == "outbound":
		a.Signature = d.signature(SIDReflectionOutbound, &v.svc)
	default:
		a.Signature = d.signature(SIDReflection, &v.svc)
	}
}

// signature returns reflection signature sid naming the services svc, as
// the table's when svc is empty. The copy is shared and never changes.
func (d *Reflection) signature(sid uint32, svc *portList) *Signature {
	if svc.n == 0 {
		return sig(sid)
	}
	k := namedKey{sid, *svc}
	if s, ok := d.named[k]; ok {
		return s
	}
	if len(d.named) >= maxNamed {
		clear(d.named)
	}
	s := *sig(sid)
	s.Msg = reflectionMsg(sid, strings.Join(serviceNames(svc.ports()), "+"))
	s.Advice = reflectionAdvice(sid, svc.ports())
	d.named[k] = &s
	return &s
}

// reflectionKind describes reflection incidents to the renderers.
type reflectionKind struct{}

func (reflectionKind) kind() Kind   { return KindReflection }
func (reflectionKind) name() string { return "reflection" }

// sides: the busiest reflector, and the victim.
func (reflectionKind) sides(a *Alert) (source, target netip.AddrPort) { return a.Src, a.Dst }

func (reflectionKind) key(a *Alert) string {
	v := a.Incident.Victim
	if v.IsSingleIP() {
		return v.Addr().String()
	}
	return v.String()
}

func (reflectionKind) appendEVE(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, `,"victim":`...)
	if in.Victim.IsSingleIP() {
		b = appendJSONString(b, in.Victim.Addr().String())
	} else {
		b = appendJSONString(b, in.Victim.String())
		b = appendUintField(b, "hosts", uint64(in.Hosts))
	}
	b = append(b, `,"reflectors":[`...)
	for i, r := range in.Reflectors {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"ip":`...)
		b = appendJSONString(b, r.Addr.String())
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(r.Port), 10)
		b = appendUintField(b, "packets", r.Packets)
		b = appendUintField(b, "bytes", r.Bytes)
		b = append(b, '}')
	}
	b = append(b, ']')
	b = appendUintField(b, "reflector_count", uint64(in.ReflectorCount))
	b = append(b, `,"services":[`...)
	for i, s := range in.Services {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func (reflectionKind) appendText(b []byte, a *Alert) []byte {
	in := &a.Incident
	for i, s := range in.Services {
		if i > 0 {
			b = append(b, '+')
		}
		b = append(b, s...)
	}
	if len(in.Services) > 0 {
		b = append(b, ' ')
	}
	b = append(b, "reflection "...)
	b = append(b, in.Phase.String()...)
	if in.Victim.IsSingleIP() {
		b = append(b, " victim "...)
		b = append(b, in.Victim.Addr().String()...)
	} else {
		b = append(b, " prefix "...)
		b = append(b, in.Victim.String()...)
		b = append(b, " ("...)
		b = strconv.AppendInt(b, int64(in.Hosts), 10)
		b = append(b, " hosts)"...)
	}
	b = append(b, " from "...)
	b = strconv.AppendInt(b, int64(in.ReflectorCount), 10)
	b = append(b, " reflector"...)
	if in.ReflectorCount != 1 {
		b = append(b, 's')
	}
	if len(in.Reflectors) > 0 {
		b = append(b, " busiest "...)
		b = append(b, a.Src.String()...)
	}
	return appendRatesText(b, in)
}

func (reflectionKind) headline(a *Alert) Headline {
	in := &a.Incident
	n, h := in.ReflectorCount, in.Hosts
	l := Headline{Detail: plural(n, "reflector"), ReflectorCount: &n}
	if h > 0 {
		l.Detail += ", " + plural(h, "host") + " hit"
		l.Hosts = &h
	}
	return l
}
