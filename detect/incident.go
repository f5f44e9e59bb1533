package detect

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// An incident is the life of one key (a victim, an endpoint pair, a
// target, a scanner, a service) from the packet that began its activity to
// the moment it ends. Every kind shares this one mechanism:
//
//   - A key's activity begins at its first packet after a quiet window;
//     first_seen, packets and bytes count from there.
//   - The kind measures the key over its window after each packet. At or
//     above its threshold, an incident opens and a start alert goes out.
//   - Once a second of packet time, the open incidents are measured
//     again: one that has stayed below its threshold for end_after ends,
//     the others report an update every update_interval.
//   - Scans and exposed services are findings: a start when found, no
//     updates, and an end when the kind's rearm time has passed (or at the
//     end of the input), with what the key sent meanwhile. The key raises
//     no new finding while one is open.
//
// The rate limit, max_alerts_per_second, holds back starts only: once an
// incident has been announced, its updates and its end always go out (their
// number is bounded by the open incidents), so that no consumer is left
// with an incident that never ends. Each kind has a share of the limit
// that the others cannot take while it has starts waiting (see admit): a
// flood of forged spoofed_flood or exposed findings cannot crowd out a
// real reflection or loop. A held-back start is retried every second, the
// oldest first, until it goes out, so an incident has at most one start
// and is reported as soon as the limit allows.

// track is the lifecycle state that every kind's per-key entry embeds. It
// is in every entry of every table, so it is kept small: the times that
// only an open incident reads are Unix nanoseconds, and a finding's rearm
// time is worked out from when it was raised.
type track struct {
	first, last    time.Time // the activity's first and latest packet
	packets, bytes uint64
	vlans          [2]uint16 // of the latest packet
	nvlan          uint8
	tun            tunnelCopy // the tunnel of the latest packet

	open      bool // an incident is open
	announced bool // its start went out
	counted   bool // its start was counted as suppressed once
	gone      bool // its entry was evicted while open
	// id names the incident, made from idSeed (the Unix microsecond it
	// counts from) when first needed: a finding held back by the alert
	// limit, as most are in a flood, never costs its key and id strings.
	id        string
	idSeed    int64
	lastAbove int64 // last time the measure was at or above the threshold, in Unix nanoseconds
	nextUpd   int64 // when the next update is due, in Unix nanoseconds
	peakPPS   float64
	peakBPS   float64

	// evid is the incident's evidence, nil while it has none: most keys
	// of the tables never have any.
	evid *evidence
	// endAt is when the key's latest finding ends (its rearm time), in
	// Unix nanoseconds, kept after it ended; 0 for the other kinds.
	endAt int64
	// tel is the router telemetry the activity came in, if any; last, as
	// its 8-byte alignment packs best there.
	tel telemetry
}

// see records a packet of t's activity, beginning a new activity if the
// key was quiet for a window. A packet of router telemetry counts what it
// stands for (see weigh), and t notes where it came from.
func (r *reporter) see(t *track, p *capture.Packet, window time.Duration) {
	if t.fresh(p.Timestamp, window) {
		t.first, t.packets, t.bytes = p.Timestamp, 0, 0
		t.tel = telemetry{}
	}
	if p.Timestamp.After(t.last) {
		t.last = p.Timestamp
	}
	if p.Sample.Packets == 0 { // captured: one packet, and nothing to note
		t.packets++
		t.bytes += uint64(p.Length)
	} else {
		w := weigh(p)
		t.packets = sat(t.packets, w.packets)
		t.bytes = sat(t.bytes, w.bytes)
		r.noteTelemetry(t, p)
	}
	t.nvlan = p.NumVLANs
	t.vlans = p.VLANs
	if p.Tunnel.Depth|t.tun.depth != 0 { // plain traffic copies nothing
		t.tun.set(&p.Tunnel)
	}
}

// fresh reports whether the key's next packet begins a new activity, so the
// kind can clear what it keeps per activity: it comes more than a window
// after the key's last. (It compares Unix nanoseconds, which detection's
// clock keeps in range, rather than now.Sub(last) with its check for
// overflow or now.After(last.Add(window)): a few percent of a flood's
// time, as see and fresh run at every packet.)
func (t *track) fresh(now time.Time, window time.Duration) bool {
	return !t.open && (t.first.IsZero() || now.UnixNano()-t.last.UnixNano() > int64(window))
}

// subject is a per-key entry whose traffic can become an incident.
type subject interface {
	lifecycle() *track
	kind() Kind
	// key is the incident's key as Alert.Key renders it: it seeds the id.
	key() string
	// measure advances the entry's windows to now and returns whether it
	// stands at or above its start threshold, with its current rates.
	measure(now time.Time) (above bool, pps, bps float64)
	// describe fills the alert's kind-specific fields.
	describe(a *Alert)
	// reset clears what the entry keeps per activity, after an end.
	reset()
}

// reporter runs the incidents of every kind: it opens, updates and ends
// them, applies the rate limit and writes the alerts.
type reporter struct {
	out       AlertWriter
	rates     RateObserver // nil: nobody plots
	watch     AlertWriter  // nil: nobody follows the alerts but out
	host      string
	home      prefixSet
	update    time.Duration
	endAfter  time.Duration
	maxPerSec int

	// now is the latest packet time, and nowNs the same in Unix ns: the
	// frames' clock moves nowNs (clockNs) without building a time.Time
	// for every frame, and now is rebuilt from it, while stale, when read
	// (nowTime).
	now    time.Time
	nowNs  int64
	stale  bool
	second int64 // the second of packet time swept last
	// kinds describes the kinds of the Engine's detectors, by Kind.
	kinds []kindInfo
	// sent counts the starts written in that second, in all and by kind;
	// waiting the open incidents whose start is held back, by kind.
	sent    int
	sentBy  []int
	waiting []int
	// heldAt is the last second a one-shot finding of the kind was held
	// back (when held says one was): it waits for its key's next packet,
	// not in active.
	heldAt []int64
	held   []bool
	active []subject // open incidents, in opening order
	// evidence, if not nil, keeps the first packets of each incident; pkt
	// is the packet being examined, during Engine.Packet. keeping lists
	// the entries whose evidence file is open: no more than the writer
	// keeps open.
	evidence EvidenceWriter
	pkt      *capture.Packet
	raw      time.Time // pkt's own time, which its evidence keeps
	keeping  []*track
	alert    Alert       // reused for every alert
	refl     []reflector // scratch for describing reflectors
	// exporters names the routers whose telemetry the tracks note.
	exporters exporterNames

	stats Stats
}

// init sizes the per-kind counters for the detectors, by Kind.
func (r *reporter) init(byKind []detector) {
	n := len(byKind)
	r.kinds = make([]kindInfo, n)
	r.stats.Kinds = make([]KindStats, n)
	for k, d := range byKind {
		r.kinds[k] = d.info()
		r.stats.Kinds[k].Name = r.kinds[k].name()
	}
	r.sentBy, r.waiting, r.heldAt, r.held = make([]int, n), make([]int, n), make([]int64, n), make([]bool, n)
}

// clock advances packet time and, on a new second, sweeps the open
// incidents. Time never goes backwards here.
func (r *reporter) clock(now time.Time) {
	if now.After(r.nowTime()) {
		// FrameNanos keeps nowNs in order with now past int64's years.
		r.now, r.nowNs = now, FrameNanos(now)
	}
	r.sweepAt(r.now.Unix())
}

// clockNs is clock for ns, a detection time in Unix ns (after 1970): a
// frame's, on every frame's path. A time that does not move the clock
// leaves the second as the last call swept it.
func (r *reporter) clockNs(ns int64) {
	if ns > r.nowNs {
		r.nowNs, r.stale = ns, true
		r.sweepAt(ns / int64(time.Second))
	}
}

// sweepAt sweeps the open incidents when s, the second of packet time
// now, is a new one.
func (r *reporter) sweepAt(s int64) {
	if s != r.second {
		r.second, r.sent = s, 0
		clear(r.sentBy)
		r.sweep(r.nowTime())
	}
}

// nowTime returns the latest packet time (the zero Time before any).
func (r *reporter) nowTime() time.Time {
	if r.stale {
		r.now, r.stale = time.Unix(0, r.nowNs).UTC(), false
	}
	return r.now
}

// check is called by a kind after it counted a packet for s.
func (r *reporter) check(s subject, now time.Time) {
	t := s.lifecycle()
	above, pps, bps := s.measure(now)
	if above {
		t.lastAbove = now.UnixNano()
	}
	if t.open {
		t.peak(pps, bps)
		r.follow(t)
		return
	}
	if !above {
		return
	}
	t.open, t.announced, t.counted, t.gone = true, false, false, false
	t.id, t.idSeed = "", t.first.UnixMicro()
	t.nextUpd = now.Add(r.update).UnixNano()
	t.peakPPS, t.peakBPS = 0, 0
	t.peak(pps, bps)
	r.active = append(r.active, s)
	r.startEvidence(s, time.Time{})
	r.stats.Kinds[s.kind()].Incidents++
	r.emit(s, PhaseStart, now, pps, bps)
}

func (t *track) peak(pps, bps float64) {
	t.peakPPS = max(t.peakPPS, pps)
	t.peakBPS = max(t.peakBPS, bps)
}

// oneShot raises a finding for a scan or an exposed service, unless one is
// open for the key. Once its start is out, the finding is open: the kind
// counts the key's packets in it, and sweep ends it at now+rearm.
func (r *reporter) oneShot(s subject, now time.Time, rearm time.Duration) {
	t := s.lifecycle()
	if t.open {
		r.follow(t)
		return
	}
	_, pps, bps := s.measure(now)
	t.peakPPS, t.peakBPS = pps, bps
	if held := t.counted && !t.announced; !held {
		// A finding whose activity began before the previous one ended (a
		// flow that outlived the rearm time) would get its id: its own
		// time tells the two apart.
		seed := t.first
		if t.endAt != 0 && t.first.UnixNano() <= t.endAt {
			seed = now
		}
		t.id, t.idSeed = "", seed.UnixMicro()
		t.counted, t.announced = false, false // a new finding, held to the limit
		r.stats.Kinds[s.kind()].Incidents++
		// Its evidence takes the key's packets for end_after, as an
		// incident's would at least, not for its whole rearm time.
		r.startEvidence(s, now.Add(r.endAfter))
	}
	r.emit(s, PhaseStart, now, pps, bps)
	if !t.announced {
		// Held back: the key's next packet tries again, and the kind's
		// share is kept for it meanwhile (see admit). A noisy key cannot
		// starve others this way: past its kind's share, it is refused.
		r.heldAt[s.kind()], r.held[s.kind()] = r.second, true
		return
	}
	t.open, t.gone, t.endAt = true, false, now.Add(rearm).UnixNano()
	r.active = append(r.active, s)
}

// sweep measures the open incidents at now: it retries suppressed starts,
// reports updates and ends the incidents that stayed quiet for end_after.
func (r *reporter) sweep(now time.Time) {
	keep := r.active[:0]
	ns := now.UnixNano()
	for _, s := range r.active {
		t := s.lifecycle()
		if t.gone {
			continue
		}
		if t.endAt != 0 { // a finding: no rates, no updates, an end at endAt
			if ns >= t.endAt {
				_, pps, bps := s.measure(now)
				r.close(s, now, pps, bps)
				continue
			}
			keep = append(keep, s)
			continue
		}
		above, pps, bps := s.measure(now)
		if above {
			t.lastAbove = ns
			t.peak(pps, bps)
		}
		if r.rates != nil && t.announced {
			r.rates.IncidentRate(r.idOf(s), s.kind(), now, pps, bps)
		}
		switch {
		case ns-t.lastAbove >= int64(r.endAfter):
			r.close(s, now, pps, bps)
			continue
		case !t.announced:
			r.emit(s, PhaseStart, now, pps, bps)
		case ns >= t.nextUpd:
			r.emit(s, PhaseUpdate, now, pps, bps)
			t.nextUpd += int64(r.update)
			if ns >= t.nextUpd { // a gap in the traffic: resume the cadence from now
				t.nextUpd = ns + int64(r.update)
			}
		}
		keep = append(keep, s)
	}
	clear(r.active[len(keep):])
	r.active = keep
	r.sweepEvidence(now)
}

// close ends an open incident and clears its activity. A finding's peak
// is its rates' at the start and the end.
func (r *reporter) close(s subject, now time.Time, pps, bps float64) {
	t := s.lifecycle()
	t.peak(pps, bps)
	r.emit(s, PhaseEnd, now, pps, bps)
	if !t.announced && t.counted {
		r.waiting[s.kind()]-- // its start waits no more
	}
	r.stopEvidence(t)
	t.open = false
	t.first, t.packets, t.bytes = time.Time{}, 0, 0
	s.reset()
}

// evicted ends the incident of an entry that its table pushes out, and
// reports whether the entry may be reused: not while the open incidents
// still list it.
func (r *reporter) evicted(s subject) bool {
	t := s.lifecycle()
	if t.gone {
		return false
	}
	if !t.open {
		r.stopEvidence(t) // a finding's: the entry is about to be reused
		return true
	}
	now := r.nowTime()
	_, pps, bps := s.measure(now)
	r.close(s, now, pps, bps)
	t.gone = true
	return false
}

// flush ends every open incident at now, oldest first.
func (r *reporter) flush(now time.Time) {
	r.clock(now)
	for _, s := range r.active {
		if t := s.lifecycle(); !t.gone {
			now := r.nowTime()
			_, pps, bps := s.measure(now)
			r.close(s, now, pps, bps)
		}
	}
	clear(r.active)
	r.active = r.active[:0]
	for len(r.keeping) > 0 {
		r.stopEvidence(r.keeping[len(r.keeping)-1])
	}
}

// emit writes one alert unless the rate limit holds it back: a start that
// admit refuses, and the end of an incident whose start never went out
// (the whole incident was held back, and is counted, not half-told).
func (r *reporter) emit(s subject, ph Phase, now time.Time, pps, bps float64) {
	t := s.lifecycle()
	k := s.kind()
	if !t.announced && (ph != PhaseStart || !r.admit(k)) {
		if ph != PhaseStart || !t.counted {
			r.stats.Suppressed++
			r.stats.Kinds[k].Suppressed++
			if ph == PhaseStart && t.open {
				r.waiting[k]++ // retried by sweep until it goes out
			}
		}
		t.counted = t.counted || ph == PhaseStart
		return
	}
	if ph == PhaseStart {
		if t.counted && t.open {
			r.waiting[k]--
		}
		t.announced = true
	}
	a := &r.alert
	*a = Alert{
		Time: now, Host: r.host, VLANs: a.VLANs[:0],
		Incident: Incident{
			Kind: k, Phase: ph, ID: r.idOf(s), FirstSeen: t.first, LastSeen: t.last,
			Packets: t.packets, Bytes: t.bytes,
			PPS: pps, BPS: bps, PeakPPS: t.peakPPS, PeakBPS: t.peakBPS,
			Reflectors: a.Incident.Reflectors[:0], Services: a.Incident.Services[:0],
			Ports: a.Incident.Ports[:0], Exporters: a.Incident.Exporters[:0],
		},
		CaptureFile: t.captureFile(),
		Tunnel:      t.tun.tunnel(),
		info:        r.kinds[k],
	}
	a.VLANs = append(a.VLANs, t.vlans[:t.nvlan]...)
	if t.tel.rate != 0 {
		r.describeTelemetry(&a.Incident, &t.tel)
	}
	s.describe(a)
	if a.Severity == 0 {
		a.Severity = a.Signature.Severity
	}
	if a.Incident.Advice == "" {
		a.Incident.Advice = a.Signature.Advice
	}
	r.out.WriteAlert(a)
	if r.watch != nil {
		r.watch.WriteAlert(a)
	}
	r.stats.Alerts++
	r.stats.Kinds[k].Phases[ph]++
}

// admit reports whether a start of kind k may go out in this second of
// packet time, and counts it if so. Each kind may write its share of
// max_alerts_per_second (split evenly among the Engine's kinds, rounded
// up: a fifth of it); past its share, it takes only what the other kinds
// with starts waiting (an incident held back, or a finding held back in
// this second or the last) leave of theirs. A kind alone uses the whole
// limit, and a noisy kind's starts never stand in the way of another
// kind's for longer than the second they came in.
func (r *reporter) admit(k Kind) bool {
	if r.maxPerSec <= 0 {
		return true
	}
	if r.sent >= r.maxPerSec {
		return false
	}
	n := len(r.kinds)
	share := (r.maxPerSec + n - 1) / n
	if r.sentBy[k] >= share {
		free := r.maxPerSec - r.sent
		for j := range Kind(n) {
			if j != k && (r.waiting[j] > 0 || r.held[j] && r.heldAt[j] >= r.second-1) {
				free -= max(0, share-r.sentBy[j])
			}
		}
		if free <= 0 {
			return false
		}
	}
	r.sent++
	r.sentBy[k]++
	return true
}

// evidence is an incident's evidence file (see reporter.startEvidence).
type evidence struct {
	file   EvidenceFile // the incident's, also once closed; nil if none
	open   bool         // file takes packets
	until  time.Time    // when a one-shot finding's evidence ends
	keepAt int          // its place in reporter.keeping plus one; 0: not listed
}

// captureFile returns the name of t's evidence file, if it has one: asked
// of the file at each alert, which names no file that was not kept.
func (t *track) captureFile() string {
	if t.evid == nil || t.evid.file == nil {
		return ""
	}
	return t.evid.file.Name()
}

// startEvidence begins the evidence file of the incident that s has just
// opened (or the finding it raised), with the packet that did it. An
// incident's evidence is the packets the kind counts for its key from
// there: the first packets of the incident as the sensor saw it, as
// FastNetMon's attack details do, since the packets before the threshold
// was crossed are not kept. until ends a finding's evidence; zero leaves
// it to the incident's end.
func (r *reporter) startEvidence(s subject, until time.Time) {
	t := s.lifecycle()
	r.stopEvidence(t)
	if t.evid != nil {
		t.evid.file = nil // a new incident: the last one's file is not its
	}
	if r.evidence == nil || r.pkt == nil {
		return
	}
	f := r.evidence.Create(r.idOf(s), r.pkt.LinkType)
	if f == nil {
		return
	}
	if t.evid == nil {
		t.evid = &evidence{} // once per key that ever has evidence
	}
	r.keeping = append(r.keeping, t)
	*t.evid = evidence{file: f, open: true, until: until, keepAt: len(r.keeping)}
	r.follow(t)
}

// follow adds the packet being examined to t's evidence, while its file
// takes more. The file keeps the frame's own time: it is evidence of what
// the capture said, whatever detection's clock made of it.
func (r *reporter) follow(t *track) {
	e := t.evid
	if e == nil || !e.open || r.pkt == nil {
		return
	}
	at := r.pkt.Timestamp
	r.pkt.Timestamp = r.raw
	ok := e.file.WritePacket(r.pkt)
	r.pkt.Timestamp = at
	if !ok {
		e.open = false // full, or failed: the file closed itself
		r.unlist(t)
	}
}

// stopEvidence closes t's evidence file, if open. Its alerts still name it
// while the writer keeps it.
func (r *reporter) stopEvidence(t *track) {
	if e := t.evid; e != nil && e.open {
		e.file.Close()
		e.open = false
		r.unlist(t)
	}
}

// unlist takes t out of keeping, in its place the last entry.
func (r *reporter) unlist(t *track) {
	i := t.evid.keepAt - 1
	last := len(r.keeping) - 1
	r.keeping[i] = r.keeping[last]
	r.keeping[i].evid.keepAt = i + 1
	r.keeping[last] = nil
	r.keeping = r.keeping[:last]
	t.evid.keepAt = 0
}

// sweepEvidence ends the findings' evidence that is due at now.
func (r *reporter) sweepEvidence(now time.Time) {
	for i := 0; i < len(r.keeping); {
		t := r.keeping[i]
		if until := t.evid.until; !until.IsZero() && !now.Before(until) {
			r.stopEvidence(t) // moves the last entry to i
			continue
		}
		i++
	}
}

// direction says where traffic from src to dst runs relative to home_net.
func (r *reporter) direction(src, dst netip.Addr) string {
	if len(r.home) == 0 {
		return "unknown"
	}
	s, d := r.home.contains(src), r.home.contains(dst)
	switch {
	case s && d:
		return "internal"
	case d:
		return "inbound"
	case s:
		return "outbound"
	}
	return "unknown"
}

// idOf returns the id of s's incident, made once.
func (r *reporter) idOf(s subject) string {
	t := s.lifecycle()
	if t.id == "" {
		t.id = incidentID(r.kinds[s.kind()].name(), s.key(), time.UnixMicro(t.idSeed))
	}
	return t.id
}

// incidentID derives an incident's id from its kind's name, key and the time of
// its first packet, so the same input always gives the same ids. The time
// counts to the microsecond, as EVE prints it: a live sensor (nanosecond
// timestamps) and a replay of tcpdump's recording of the same traffic
// (microseconds) name an incident alike.
func incidentID(kind, key string, first time.Time) string {
	h := keyHash(kind, key)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(first.Truncate(time.Microsecond).UnixNano()))
	h.Write(ts[:])
	s := strconv.FormatUint(h.Sum64(), 16)
	for len(s) < 16 {
		s = "0" + s
	}
	return s
}
