package detect

import (
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// SpoofedFlood detects floods whose sources are evidently forged, per
// target:
//
//   - bogon sources: addresses the RFC 6890 registries say are never a
//     source (loopback, multicast, reserved, IPv4-mapped), and private
//     and other non-global sources from outside home_net toward a routable
//     or protected address;
//   - land: source equal to destination;
//   - random sources: many distinct sources in one window, nearly all of
//     which sent one or two packets and are new to the target. A
//     HyperLogLog counts the sources and a bottom-k sample of them, with
//     exact per-source counts, measures the share that sent at most two
//     packets and that the target's sourceMemory had not heard from in
//     spoofed_flood.source_memory: a busy server's clients, one query each
//     per window, come back and are known; forged sources never repeat.
//     All are fixed-size, so a flood of ten million forged sources costs
//     the same memory as one of ten. The alert reports the distinct
//     sources of the whole incident: each window's sketch is merged into
//     the incident's when the window ends.
//
// A target's memory judges a source only once it has listened to the
// target for warmUp(window), 4/5 of a window (from the target's first
// packet, or after it was silent for two memory periods): a server that
// comes into view has all its clients unseen, and a source's first packet
// in view is new whether or not it will come back. Past the warm-up, a
// client that comes back within it is known; one that comes back more
// slowly still looks new until it has come back once, the limit of a
// sensor that has just started. A window that looks random before its
// sources can be judged (enough sources, nearly all of one or two packets)
// is suspect: its packets count as random-source evidence if the window
// after it proves random. 4/5 rather than a whole window, so that a flood
// that comes as bursts within a few seconds of a target coming into view
// is still judged.
//
// The incident starts at spoofed_flood.pps evidently forged packets per
// second, or at a window of spoofed_flood.distinct_sources sources of
// which spoofed_flood.random_share sent at most two packets and were new.
type SpoofedFlood struct {
	cfg     *SpoofedFloodConfig
	r       *reporter
	watched *PortSet // nil: every TCP and UDP packet
	allow   prefixSet
	targets *table[targetKey, target]
	cut     uint64 // the highest source hash a target's memory keeps
}

// targetKey is a flood's target in its tenant.
type targetKey struct {
	addr   netip.Addr
	tenant uint32
}

var _ detector = (*SpoofedFlood)(nil)

func (d *SpoofedFlood) info() kindInfo { return spoofedFloodKind{} }

func (d *SpoofedFlood) setup(sizes *Config, r *reporter) error {
	cfg := &sizes.SpoofedFlood
	d.r = r
	var err error
	d.targets, err = newTable("spoofed_flood.targets", cfg.MaxTargets, hashTarget, cfg.Window, func(t *target) bool { return r.evicted(t) })
	return err
}

func (d *SpoofedFlood) configure(c *Config, s *settings) {
	d.cfg, d.watched, d.allow = &c.SpoofedFlood, s.spoofPorts, s.allow[KindSpoofedFlood]
	d.cut = memoryCut(c.SpoofedFlood.DistinctSources)
}

// wants returns the packets from or to spoofed_flood.ports, or every
// packet when it is empty.
func (d *SpoofedFlood) wants() wanted {
	return wanted{from: d.watched, to: d.watched, every: d.watched == nil, loops: true}
}

func (d *SpoofedFlood) tables(ts []TableStats) []TableStats { return append(ts, d.targets.stats()) }

func hashTarget(k targetKey) uint64 { return hashAddr(k.addr, seedTarget^tenantSeed(k.tenant)) }

// Why a packet looks forged.
type forgery uint8

const (
	forgedNot forgery = iota
	forgedBogon
	forgedLand
)

// forged says whether p's source is evidently forged: a bogon, the
// destination itself, or a private address (RFC 1918, CGN, link-local,
// ULA, ...) outside home_net sending toward a routable or protected
// address, where no private source can come from.
func forged(p *capture.Packet, home prefixSet) forgery {
	if p.Src == p.Dst {
		return forgedLand
	}
	switch classify(p.Src) {
	case srcBogon:
		return forgedBogon
	case srcPrivate:
		if home.contains(p.Src) {
			return forgedNot
		}
		if home.contains(p.Dst) || classify(p.Dst) == srcGlobal {
			return forgedBogon
		}
	}
	return forgedNot
}

// packet takes every TCP and UDP packet from or to one of its ports.
func (d *SpoofedFlood) packet(pv *view) {
	p := pv.p
	if d.allow.contains(p.Src) || d.allow.contains(p.Dst) {
		return
	}
	now := p.Timestamp
	k := targetKey{p.Dst, p.Tenant}
	t, made := d.targets.getOrAdd(k, now)
	if t == nil {
		return
	}
	if made {
		*t = target{d: d, k: k}
		t.reset()
		t.mem.reset(now)
	}
	t.count(p, pv.forged())
	d.r.check(t, now)
}

// target is the state of one flood target.
type target struct {
	d      *SpoofedFlood
	k      targetKey
	t      track
	all    meter // every examined packet to the target
	forged meter // the bogon and land ones
	ev     Evidence

	// The random-source test runs on tumbling windows.
	winEnd     time.Time
	winPackets uint64
	sources    hll // this window's sources
	seen       hll // the sources of the windows before it in this activity
	smp        sample
	random     bool   // this window is a random-source flood
	prevRandom bool   // so was the previous one
	suspect    bool   // this window looks random while the memory warms up
	pending    uint64 // packets of the suspect windows just before this one
	// mem outlives activities: it is the target's, kept while its entry is.
	mem sourceMemory

	lastSrc  netip.AddrPort // the latest source, forged ones first
	lastDst  uint16
	proto    uint8
	lastBogo bool // lastSrc is evidently forged
}

var _ subject = (*target)(nil)

func (t *target) count(p *capture.Packet, why forgery) {
	w := t.d.cfg.Window
	now := p.Timestamp
	if t.t.fresh(now, w) {
		t.reset()
	}
	t.d.r.see(&t.t, p, w)
	wt := weigh(p)
	t.all.add(now, w, wt)
	t.roll(now)

	// The sources are counted as seen, one per packet, whatever each
	// stands for: a sampled packet is one sighting of its source.
	h := hashAddr(p.Src, seedSource)
	changed := t.sources.add(h)
	t.smp.add(h, t.remember(h, now))
	t.winPackets = sat(t.winPackets, wt.packets)
	if t.random {
		t.ev.RandomSource = sat(t.ev.RandomSource, wt.packets)
	} else if changed {
		// The estimate moves only when a register does: most packets of
		// a flood from few sources skip this.
		t.judge()
	}

	switch why {
	case forgedBogon:
		t.ev.Bogon = sat(t.ev.Bogon, wt.packets)
	case forgedLand:
		t.ev.Land = sat(t.ev.Land, wt.packets)
	}
	if why != forgedNot {
		t.forged.add(now, w, wt)
	}
	if why != forgedNot || !t.lastBogo {
		t.lastSrc, t.lastBogo = p.SrcAddrPort(), why != forgedNot
	}
	t.lastDst, t.proto = p.DstPort, p.Proto
}

// judge decides whether this window is a random-source flood: enough
// sources, nearly all new to the target and of one or two packets each; or,
// after suspect windows, sources that prove new.
func (t *target) judge() {
	cfg := t.d.cfg
	enough := t.sources.estimate() >= float64(cfg.DistinctSources)
	share, judged := t.smp.randomShare()
	switch {
	case !judged:
		if enough && t.smp.lowShare() >= cfg.RandomShare {
			t.suspect = true
		}
	case share >= cfg.RandomShare && (enough || t.pending > 0):
		t.random, t.suspect = true, false
		t.ev.RandomSource = sat(t.ev.RandomSource, sat(t.pending, t.winPackets))
		t.pending = 0
	}
}

// warmUp is how long a target's memory listens before it judges sources.
func warmUp(window time.Duration) time.Duration { return window / 5 * 4 }

// remember looks the source hashed h up in the target's memory and returns
// what the memory knew of it. It adds the source to the memory unless the
// target is under a random-source flood: forged sources would only push
// its clients out, and one sent from twice would become known.
func (t *target) remember(h uint64, now time.Time) novelty {
	if h > t.d.cut {
		return noveltyUnknown
	}
	m := &t.mem
	m.advance(now, t.d.cfg.SourceMemory)
	nov := noveltyUnknown
	if m.warm(now, warmUp(t.d.cfg.Window)) {
		nov = noveltyNew
		if m.has(h) {
			nov = noveltyKnown
		}
	}
	if !t.random && !t.prevRandom {
		m.add(h, now)
	}
	return nov
}

// roll starts a new random-source window when now has left the current one.
func (t *target) roll(now time.Time) {
	if now.Before(t.winEnd) {
		return
	}
	w := t.d.cfg.Window
	if !t.winEnd.IsZero() {
		t.seen.merge(&t.sources)
	}
	next := now.Before(t.winEnd.Add(w)) // the new window follows this one
	t.prevRandom = t.random && next
	if t.suspect && next {
		t.pending = sat(t.pending, t.winPackets)
	} else {
		t.pending = 0
	}
	t.random, t.suspect = false, false
	t.winPackets = 0
	t.sources.reset()
	t.smp.reset()
	t.winEnd = now.Truncate(w).Add(w)
}

func (t *target) lifecycle() *track { return &t.t }
func (t *target) kind() Kind        { return KindSpoofedFlood }
func (t *target) key() string       { return withTenant(t.k.addr.String(), t.k.tenant) }

func (t *target) measure(now time.Time) (bool, float64, float64) {
	w := t.d.cfg.Window
	t.all.advance(now, w)
	t.forged.advance(now, w)
	t.roll(now)
	fpps, _ := t.forged.rate(w)
	pps, bps := t.all.rate(w)
	return fpps >= t.d.cfg.PPS || t.random || t.prevRandom, pps, bps
}

func (t *target) reset() {
	t.ev = Evidence{}
	t.seen.reset()
	t.lastBogo = false
	t.winEnd = time.Time{}
	t.random, t.prevRandom = false, false
	t.suspect, t.pending = false, 0
}

func (t *target) describe(a *Alert) {
	in := &a.Incident
	a.Src, a.Dst, a.Proto, a.Tenant = t.lastSrc, netip.AddrPortFrom(t.k.addr, t.lastDst), t.proto, t.k.tenant
	a.Signature = sig(SIDSpoofedFlood)
	in.Target = t.k.addr
	in.DistinctSources = int(math.Round(t.seen.unionEstimate(&t.sources)))
	in.Evidence = t.ev
	// The sources are forged, so only the target says where the flood runs.
	switch h := t.d.r.home; {
	case len(h) == 0:
		in.Direction = "unknown"
	case h.contains(t.k.addr):
		in.Direction = "inbound"
	default:
		in.Direction = "outbound"
	}
}

// spoofedFloodKind describes spoofed floods to the renderers.
type spoofedFloodKind struct{}

func (spoofedFloodKind) kind() Kind   { return KindSpoofedFlood }
func (spoofedFloodKind) name() string { return "spoofed_flood" }

// sides: the latest (forged) source, and the target.
func (spoofedFloodKind) sides(a *Alert) (source, target netip.AddrPort) { return a.Src, a.Dst }

func (spoofedFloodKind) key(a *Alert) string {
	return a.Incident.Target.String()
}

func (spoofedFloodKind) appendEVE(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, `,"target":`...)
	b = appendJSONString(b, in.Target.String())
	b = appendUintField(b, "distinct_sources", uint64(in.DistinctSources))
	b = append(b, `,"evidence":{"bogon":`...)
	b = strconv.AppendUint(b, in.Evidence.Bogon, 10)
	b = appendUintField(b, "land", in.Evidence.Land)
	b = appendUintField(b, "random_source", in.Evidence.RandomSource)
	return append(b, '}')
}

func (spoofedFloodKind) appendText(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, "spoofed flood "...)
	b = append(b, in.Phase.String()...)
	b = append(b, " target "...)
	b = append(b, in.Target.String()...)
	b = append(b, " from ~"...)
	b = strconv.AppendInt(b, int64(in.DistinctSources), 10)
	b = append(b, " sources (bogon "...)
	b = strconv.AppendUint(b, in.Evidence.Bogon, 10)
	b = append(b, ", land "...)
	b = strconv.AppendUint(b, in.Evidence.Land, 10)
	b = append(b, ", random_source "...)
	b = strconv.AppendUint(b, in.Evidence.RandomSource, 10)
	b = append(b, " packets)"...)
	return appendRatesText(b, in)
}

func (spoofedFloodKind) headline(a *Alert) Headline {
	n := a.Incident.DistinctSources
	return Headline{Detail: "~" + plural(n, "source"), DistinctSources: &n}
}
