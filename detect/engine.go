package detect

import (
	"encoding/json"
	"math/bits"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Engine runs every detector on the packets of one capture and writes
// their alerts. It implements Detector.
//
// Packet time is its only clock: windows, updates, ends and the rate limit
// advance on the packets' timestamps (and on Tick), so a capture replayed
// gives byte-identical alerts. Every table it keeps is bounded, and a
// packet costs O(1) work and no allocation once its keys exist.
//
// An Engine belongs to one goroutine: Packet, Tick, Flush and Stats must
// not be called concurrently. Alerts are written synchronously from those
// calls.
type Engine struct {
	cfg *Config // the settings in force, which the detectors point into
	r   reporter
	svc PortSet // the loop set: service-to-service traffic is a loop's
	// detectors are the Engine's, in the order they see a packet, and
	// byKind the same by Kind.
	detectors []detector
	byKind    []detector
	// from and to have a bit per detector (its index in detectors) for
	// each source and destination port it wants; both, every and loops
	// mark the detectors whose wanted says so. apply sets them.
	from, to           [1 << 16]uint8
	both, every, loops uint8
	// watch holds every port any detector looks at, for Wants, which other
	// goroutines call: Reconfigure replaces it whole.
	watch atomic.Pointer[watchSet]
	// flowPorts is cfg.FlowPorts(): the ports whose flows the caller's
	// flow table tracks (see FlowPorts).
	flowPorts PortSet

	view    view // the packet being examined
	packets uint64
	wol     uint64

	// clock is detection's clock, which Stamp and Frame put the frames'
	// times on. stamped is the packet Stamp stamped last, and raw its own
	// time, which its evidence keeps.
	clock   Clock
	stamped *capture.Packet
	raw     time.Time
}

var _ Detector = (*Engine)(nil)

// New returns an Engine that writes its alerts to out. It validates cfg and
// does no I/O.
func New(cfg Config, out AlertWriter) (*Engine, error) { return newEngine(cfg, out) }

// newEngine is New with extra detectors, for tests: their kinds must
// follow the built-in ones, in their order.
func newEngine(cfg Config, out AlertWriter, extra ...detector) (*Engine, error) {
	if out == nil {
		return nil, errorf("new engine: nil AlertWriter")
	}
	s, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	// The tables' sizes: as given (the sensor sizes them from its
	// max_memory), or as DefaultMaxMemory sizes them.
	z, err := cfg.sizes()
	if err != nil {
		return nil, err
	}
	e := &Engine{r: reporter{out: out}}
	// The spoofed-flood detector sees a packet first, as it always has:
	// the order of the alerts one packet raises depends on it.
	e.detectors = append([]detector{new(SpoofedFlood), new(Loop), new(Reflection), new(Scan), new(Exposed)}, extra...)
	if len(e.detectors) > 8 {
		return nil, errorf("new engine: %d detectors, more than a route holds", len(e.detectors))
	}
	e.byKind = make([]detector, len(e.detectors))
	for _, d := range e.detectors {
		k := d.info().kind()
		if int(k) >= len(e.byKind) || e.byKind[k] != nil {
			return nil, errorf("new engine: detector %s: kind %d taken or out of order", d.info().name(), k)
		}
		e.byKind[k] = d
	}
	e.r.init(e.byKind)
	for _, d := range e.byKind {
		if err := d.setup(&z, &e.r); err != nil {
			return nil, err
		}
	}
	e.apply(&cfg, s)
	return e, nil
}

// apply puts the settings c (compiled as s) in force: everything but the
// tables, which New makes once. New and Reconfigure share it.
func (e *Engine) apply(c *Config, s *settings) {
	e.cfg = c
	e.flowPorts = *c.FlowPorts()
	e.svc = s.loopPorts
	e.r.host, e.r.home = c.SensorName, s.home
	e.view.home = s.home
	e.r.update, e.r.endAfter, e.r.maxPerSec = c.UpdateInterval, c.EndAfter, c.MaxAlertsPerSecond
	e.from, e.to, e.both, e.every, e.loops = [1 << 16]uint8{}, [1 << 16]uint8{}, 0, 0, 0
	w := &watchSet{}
	for i, d := range e.detectors {
		d.configure(c, s)
		bit := uint8(1) << i
		wd := d.wants()
		if wd.every {
			e.every |= bit
			w.all = true
		}
		if wd.both {
			e.both |= bit
		}
		if wd.loops {
			e.loops |= bit
		}
		route(&e.from, wd.from, bit, &w.ports)
		route(&e.to, wd.to, bit, &w.ports)
	}
	for i, word := range e.flowPorts {
		w.interest[i] = w.ports[i] | word
	}
	e.watch.Store(w)
}

// route sets bit in r for each port of ps, and adds them to all.
func route(r *[1 << 16]uint8, ps *PortSet, bit uint8, all *PortSet) {
	if ps == nil {
		return
	}
	for i, word := range ps {
		all[i] |= word
		for ; word != 0; word &= word - 1 {
			r[i<<6|bits.TrailingZeros64(word)] |= bit
		}
	}
}

// watchSet is what Wants looks at: the ports any detector watches, or all
// of them.
type watchSet struct {
	ports PortSet
	all   bool // a detector looks at every port
	// interest is ports and the flow table's: see Interesting.
	interest PortSet
}

var _ capture.Interest = (*Engine)(nil)

// Interesting implements capture.Interest: it reports false for a TCP or
// UDP packet between ports src and dst that neither a detector (Wants)
// nor the flow table (FlowPorts) looks at, which the flow table only
// counts as untracked and the Engine only reads the time of. Any
// goroutine may call it, as Wants, and with the same contract.
func (e *Engine) Interesting(src, dst uint16) bool {
	w := e.watch.Load()
	// The destination first: a flood's is one port, whose word of the
	// set stays in the cache, and its source ports are random.
	return w.all || w.interest.Has(dst) || w.interest.Has(src)
}

// FlowPorts returns the ports whose flows the detectors need, for the
// flow table that feeds the Engine (FlowConfig.Ports). The Engine keeps
// the set current when Reconfigure changes the ports, on its goroutine,
// which must therefore be the flow table's too.
func (e *Engine) FlowPorts() *PortSet { return &e.flowPorts }

// Wants reports whether Packet could do anything with p besides reading
// its time: false for packets without ports and for those on no port that
// a detector watches, which are most of the traffic. A worker that does
// not own the Engine forwards only the packets it wants (and the passing
// of time). Any goroutine may call Wants, also while Packet or
// Reconfigure runs: a packet it judged just before a reload that adds a
// port is not seen again.
func (e *Engine) Wants(p *capture.Packet) bool {
	if !p.HasPorts || !p.Src.IsValid() {
		return false
	}
	w := e.watch.Load()
	return w.ports.Has(p.SrcPort) || w.ports.Has(p.DstPort) ||
		w.all && (p.Proto == capture.ProtoUDP || p.Proto == capture.ProtoTCP)
}

// KeepEvidence makes the Engine write the first packets of each incident to
// w, and name the file in the incident's alerts. Call it before the first
// packet.
func (e *Engine) KeepEvidence(w EvidenceWriter) { e.r.evidence = w }

// ObserveRates makes the Engine report the rates of its open incidents to
// o once per second of packet time. Call it before the first packet.
func (e *Engine) ObserveRates(o RateObserver) { e.r.rates = o }

// ObserveAlerts makes the Engine give every alert to w too, after its
// writer has had it (a report following the run). Call it before the
// first packet.
func (e *Engine) ObserveAlerts(w AlertWriter) { e.r.watch = w }

// Packet implements Detector: it hands p to every detector that can use it.
// p.Timestamp is detection time: a caller that reads frames puts each
// packet on the clock with Stamp first.
func (e *Engine) Packet(p *capture.Packet, f *Flow, dir Dir) {
	stamped := p == e.stamped // Stamp has just put p on the clock
	e.stamped = nil
	if stamped {
		e.r.clockNs(e.clock.now) // p's time, as Stamp set it
	} else {
		e.r.clock(p.Timestamp)
	}
	if !e.Wants(p) {
		return
	}
	e.r.pkt, e.r.raw = p, p.Timestamp // for the evidence of the incidents it counts for
	if stamped {
		e.r.raw = e.raw
	}
	e.packet(p, f, dir)
	e.r.pkt = nil
}

// Stamp puts p, just decoded, on detection's clock (see Clock), before the
// flow table and Packet see it: p.Timestamp becomes the time detection
// counts p at, which never runs backward, and the frame's own time is kept
// for p's evidence file. It counts an impossible time if the Engine wants
// p, and returns false for a packet that has no time to count at (an
// impossible time before the first valid one): the caller drops it.
func (e *Engine) Stamp(p *capture.Packet) bool {
	ns := FrameNanos(p.Timestamp)
	at, ok, invalid := e.clock.Frame(ns)
	if invalid && e.Wants(p) {
		e.clock.CountInvalid(ns)
	}
	if !ok {
		return false
	}
	e.stamped, e.raw = p, p.Timestamp
	if at != ns {
		p.Timestamp = time.Unix(0, at).UTC()
	}
	return true
}

// Frame puts the time of a frame that no Packet call follows (nothing
// detection wants, or a packet it dropped) on detection's clock, which
// moves packet time on as Tick does. ns is the frame's time (FrameNanos).
// It returns false, as Stamp does, for a frame that had no time to count
// at.
func (e *Engine) Frame(ns int64) bool {
	at, ok, _ := e.clock.Frame(ns)
	if ok {
		e.r.clockNs(at)
	}
	return ok
}

// Now returns detection's clock: the zero time before the first frame
// with a valid time.
func (e *Engine) Now() time.Time { return e.clock.Now() }

func (e *Engine) packet(p *capture.Packet, f *Flow, dir Dir) {
	e.packets++
	if p.Proto == capture.ProtoUDP && isWakeOnLAN(p) {
		e.wol++
		return
	}
	if p.Proto != capture.ProtoUDP && p.Proto != capture.ProtoTCP {
		return
	}
	from, to := e.from[p.SrcPort], e.to[p.DstPort]
	route := (from|to)&^e.both | from&to&e.both | e.every
	if route == 0 {
		return // ordinary traffic: nothing here can use it
	}
	v := &e.view // its home is set by apply
	v.p, v.f, v.dir, v.judged = p, f, dir, false
	v.srcSvc, v.dstSvc = false, false
	if p.Proto == capture.ProtoUDP {
		v.srcSvc, v.dstSvc = e.svc.Has(p.SrcPort), e.svc.Has(p.DstPort)
		if v.srcSvc && v.dstSvc {
			route &= e.loops // two service ports talking: a loop, never reflection, scan or exposed
		}
	}
	for ; route != 0; route &= route - 1 {
		e.detectors[bits.TrailingZeros8(route)].packet(v)
	}
	v.p, v.f = nil, nil // borrowed for the call only
}

// Tick advances detection's clock to now without a frame, so that
// incidents update and end during quiet periods of a live capture; a now
// behind the clock does nothing. now must be detection time (Now, moved on
// by the time the capture has been quiet), never the wall clock of a
// replay.
func (e *Engine) Tick(now time.Time) {
	e.clock.Advance(now)
	if e.clock.Started() {
		e.r.clock(e.clock.Now())
	}
}

// Flush implements Detector: it ends every open incident at now.
func (e *Engine) Flush(now time.Time) { e.r.flush(now) }

// Stats are an Engine's counters.
type Stats struct {
	Packets   uint64 // packets examined: those Wants
	WakeOnLAN uint64 // Wake-on-LAN magic packets examined, never evidence
	// Kinds counts by kind of incident, indexed by Kind.
	Kinds  []KindStats
	Alerts uint64 // alerts written
	// Suppressed counts the alerts max_alerts_per_second held back (a start
	// retried later counts once), in all kinds.
	Suppressed uint64
	Open       int          // incidents open now
	Tables     []TableStats // one per bounded table
	// TimeStepsBack counts the steps back of the capture's clock, and
	// TimeInvalid the packets with an impossible time (see Clock);
	// FirstStepBack and FirstInvalid say when the first of each came.
	TimeStepsBack, TimeInvalid  uint64
	FirstStepBack, FirstInvalid ClockEvent
}

// KindStats are the counters of one kind of incident.
type KindStats struct {
	Name string // the kind, as alerts spell it
	// Incidents counts the incidents opened (and, for scans and exposed
	// services, the findings raised).
	Incidents uint64
	// Phases counts the alerts written, by phase.
	Phases [NumPhases]uint64
	// Suppressed counts the alerts max_alerts_per_second held back.
	Suppressed uint64
}

// TableStats describes one bounded table.
type TableStats struct {
	Name     string // "reflection.victims", ...
	Len, Cap int
	Evicted  uint64 // entries pushed out by the bound
	// Rejected counts packets of new keys that the admission sketch kept
	// out of the table while it was under a flood of new keys.
	Rejected uint64
}

// MarshalJSON renders the counters for an EVE stats event, by kind and
// phase name:
//
//	{"packets":..,"wake_on_lan":..,"alerts":..,"suppressed":..,"open":..,
//	 "time_steps_back":..,"time_invalid":..,
//	 "kinds":{"reflection":{"incidents":..,"start":..,"update":..,"end":..,"suppressed":..},...},
//	 "tables":[{"name":"reflection.victims","len":..,"cap":..,"evicted":..,"rejected":..},...]}
func (s Stats) MarshalJSON() ([]byte, error) {
	type kindStats struct {
		Incidents  uint64 `json:"incidents"`
		Start      uint64 `json:"start"`
		Update     uint64 `json:"update"`
		End        uint64 `json:"end"`
		Suppressed uint64 `json:"suppressed"`
	}
	type tableStats struct {
		Name     string `json:"name"`
		Len      int    `json:"len"`
		Cap      int    `json:"cap"`
		Evicted  uint64 `json:"evicted"`
		Rejected uint64 `json:"rejected"`
	}
	out := struct {
		Packets    uint64               `json:"packets"`
		WakeOnLAN  uint64               `json:"wake_on_lan"`
		Alerts     uint64               `json:"alerts"`
		Suppressed uint64               `json:"suppressed"`
		Open       int                  `json:"open"`
		StepsBack  uint64               `json:"time_steps_back"`
		Invalid    uint64               `json:"time_invalid"`
		Kinds      map[string]kindStats `json:"kinds"`
		Tables     []tableStats         `json:"tables"`
	}{
		Packets: s.Packets, WakeOnLAN: s.WakeOnLAN, Alerts: s.Alerts, Suppressed: s.Suppressed, Open: s.Open,
		StepsBack: s.TimeStepsBack, Invalid: s.TimeInvalid,
		Kinds: make(map[string]kindStats, len(s.Kinds)), Tables: []tableStats{},
	}
	for _, k := range s.Kinds {
		ph := k.Phases
		out.Kinds[k.Name] = kindStats{Incidents: k.Incidents, Start: ph[PhaseStart],
			Update: ph[PhaseUpdate], End: ph[PhaseEnd], Suppressed: k.Suppressed}
	}
	for _, t := range s.Tables {
		out.Tables = append(out.Tables, tableStats(t))
	}
	return json.Marshal(out)
}

// Stats returns the Engine's counters, the caller's copy.
func (e *Engine) Stats() Stats {
	s := e.r.stats
	s.Kinds = slices.Clone(s.Kinds)
	s.Packets, s.WakeOnLAN = e.packets, e.wol
	c := e.clock.Stats()
	s.TimeStepsBack, s.TimeInvalid, s.FirstStepBack, s.FirstInvalid = c.StepsBack, c.Invalid, c.FirstStepBack, c.FirstInvalid
	for _, a := range e.r.active {
		if !a.lifecycle().gone {
			s.Open++
		}
	}
	for _, d := range e.byKind {
		s.Tables = d.tables(s.Tables)
	}
	return s
}

// isWakeOnLAN reports whether p carries a Wake-on-LAN magic packet: six
// 0xff bytes, then one MAC address sixteen times (possibly followed by a
// SecureOn password). Such packets are sent to UDP 7 or 9 and are benign.
// A payload cut by the snap length is judged on what was captured.
//
// A flow record has no payload to look at: one to UDP 7 or 9 whose
// payloads average a magic packet's size (102 bytes, or 106 or 108 with a
// SecureOn password of 4 or 6) is taken for Wake-on-LAN, as a magic packet
// repeated is the only such traffic those ports see. It is a guess: forged
// requests of exactly that size, seen only through flow records, pass for
// it too.
func isWakeOnLAN(p *capture.Packet) bool {
	const size = 6 + 16*6
	if p.Sample.Record {
		switch p.PayloadLen {
		case size, size + 4, size + 6:
			return p.DstPort == 7 || p.DstPort == 9
		}
		return false
	}
	b := p.Payload
	if p.PayloadLen < size || len(b) < 12 || (p.Fragment && p.FragOffset > 0) {
		return false
	}
	if string(b[:6]) != "\xff\xff\xff\xff\xff\xff" {
		return false
	}
	mac := b[6:12]
	for i := 12; i+6 <= min(len(b), size); i += 6 {
		if string(b[i:i+6]) != string(mac) {
			return false
		}
	}
	return true
}

// nmap's UDP echo probes (nmap-payloads): before 7.94 and since.
var nmapEchoProbes = [...]string{"\r\n\r\n", "help\r\n\r\n"}

// isNmapProbe reports whether p is one of nmap's echo probes. A flow
// record is never one: it has no payload to recognise (an sFlow sample
// has its packet's first bytes, and is judged on them).
func isNmapProbe(p *capture.Packet) bool {
	if p.Sample.Record || p.Fragment || p.PayloadLen != len(p.Payload) {
		return false
	}
	for _, s := range nmapEchoProbes {
		if string(p.Payload) == s {
			return true
		}
	}
	return false
}

// serviceName names the small services by port.
func serviceName(port uint16) string {
	switch port {
	case 7:
		return "echo"
	case 11:
		return "systat"
	case 13:
		return "daytime"
	case 17:
		return "qotd"
	case 19:
		return "chargen"
	case 37:
		return "time"
	}
	return "port " + strconv.Itoa(int(port))
}
