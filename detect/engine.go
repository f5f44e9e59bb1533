package detect

import (
	"encoding/json"
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
	cfg   *Config // the settings in force, which the detectors point into
	r     reporter
	svc   PortSet // the loop set: service-to-service traffic is a loop's
	refl  reflection
	loop  loop
	spoof spoof
	scan  scan
	expo  exposure
	// watch holds every port any detector looks at, for Wants, which other
	// goroutines call: Reconfigure replaces it whole.
	watch atomic.Pointer[watchSet]
	// flowPorts is cfg.FlowPorts(): the ports whose flows the caller's
	// flow table tracks (see FlowPorts).
	flowPorts PortSet

	packets uint64
	wol     uint64
}

var _ Detector = (*Engine)(nil)

// New returns an Engine that writes its alerts to out. It validates cfg and
// does no I/O.
func New(cfg Config, out AlertWriter) (*Engine, error) {
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
	if err := e.refl.init(&z.Reflection, &e.r); err != nil {
		return nil, err
	}
	if err := e.loop.init(&z.Loop, &e.r); err != nil {
		return nil, err
	}
	if err := e.spoof.init(&z.SpoofedFlood, &e.r); err != nil {
		return nil, err
	}
	if err := e.scan.init(&z.Scan, &e.r); err != nil {
		return nil, err
	}
	if err := e.expo.init(&z.Exposed, &e.r); err != nil {
		return nil, err
	}
	e.apply(&cfg, s)
	return e, nil
}

// apply puts the settings c (compiled as s) in force: everything but the
// tables, which New makes once. New and Reconfigure share it.
func (e *Engine) apply(c *Config, s *settings) {
	e.cfg = c
	e.flowPorts = *c.FlowPorts()
	e.watch.Store(s.watchSet())
	e.svc = s.loopPorts
	e.r.host, e.r.home = c.SensorName, s.home
	e.r.update, e.r.endAfter, e.r.maxPerSec = c.UpdateInterval, c.EndAfter, c.MaxAlertsPerSecond
	e.refl.cfg, e.refl.ports, e.refl.allow = &c.Reflection, s.reflPorts, s.allow[KindReflection]
	e.loop.cfg, e.loop.allow = &c.Loop, s.allow[KindLoop]
	e.spoof.cfg, e.spoof.ports, e.spoof.allow = &c.SpoofedFlood, s.spoofPorts, s.allow[KindSpoofedFlood]
	e.scan.cfg, e.scan.ports, e.scan.allow = &c.Scan, s.scanPorts, s.allow[KindScan]
	e.expo.cfg, e.expo.ports, e.expo.allow = &c.Exposed, s.exposPorts, s.allow[KindExposed]
}

// watchSet is what Wants looks at: the ports any detector watches, or all
// of them.
type watchSet struct {
	ports PortSet
	all   bool // the spoofed-flood detector looks at every port
}

func (s *settings) watchSet() *watchSet {
	w := &watchSet{}
	for _, ps := range []*PortSet{&s.loopPorts, &s.reflPorts, &s.scanPorts, &s.exposPorts, s.spoofPorts} {
		if ps == nil {
			w.all = true
			continue
		}
		for i := range w.ports {
			w.ports[i] |= ps[i]
		}
	}
	return w
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

// Packet implements Detector: it hands p to every detector that can use it.
func (e *Engine) Packet(p *capture.Packet, f *Flow, dir Dir) {
	e.r.clock(p.Timestamp)
	if !e.Wants(p) {
		return
	}
	e.r.pkt = p // for the evidence of the incidents it counts for
	e.packet(p, f, dir)
	e.r.pkt = nil
}

func (e *Engine) packet(p *capture.Packet, f *Flow, dir Dir) {
	e.packets++
	if p.Proto == capture.ProtoUDP && isWakeOnLAN(p) {
		e.wol++
		return
	}
	srcSvc, dstSvc := e.svc.Has(p.SrcPort), e.svc.Has(p.DstPort)
	examined := e.spoof.examines(p)
	if !examined && !srcSvc && !dstSvc && !e.refl.ports.Has(p.SrcPort) && !e.refl.ports.Has(p.DstPort) &&
		!e.scan.ports.Has(p.DstPort) && !e.expo.ports.Has(p.SrcPort) {
		return // ordinary traffic: nothing here can use it
	}
	why := forgedNot
	if examined || p.Proto == capture.ProtoUDP {
		why = forged(p, e.r.home)
	}
	if examined {
		e.spoof.packet(p, why)
	}
	switch p.Proto {
	case capture.ProtoUDP:
		if srcSvc && dstSvc {
			// Two service ports talking: a loop, never reflection, scan or
			// exposure.
			e.loop.packet(p, f, dir)
			return
		}
		e.refl.packet(p, srcSvc, dstSvc, why)
		e.scan.packet(p, srcSvc)
		e.expo.packet(p, f, dir, dstSvc)
	case capture.ProtoTCP:
		e.scan.packet(p, false)
		e.expo.packet(p, f, dir, false)
	}
}

// Tick advances packet time without a packet, so that incidents update and
// end during quiet periods of a live capture. now must be packet time (the
// capture's clock), never the wall clock of a replay.
func (e *Engine) Tick(now time.Time) { e.r.clock(now) }

// Flush implements Detector: it ends every open incident at now.
func (e *Engine) Flush(now time.Time) { e.r.flush(now) }

// Stats are an Engine's counters.
type Stats struct {
	Packets   uint64 // packets examined: those Wants
	WakeOnLAN uint64 // Wake-on-LAN magic packets examined, never evidence
	// Incidents counts the incidents opened (and, for scans and exposures,
	// the findings raised), by kind.
	Incidents [NumKinds]uint64
	// Phases counts the alerts written, by kind and phase.
	Phases [NumKinds][NumPhases]uint64
	Alerts uint64 // alerts written
	// Suppressed counts the alerts max_alerts_per_second held back (a start
	// retried later counts once), in total and by kind.
	Suppressed       uint64
	SuppressedByKind [NumKinds]uint64
	Open             int          // incidents open now
	Tables           []TableStats // one per bounded table
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
		Kinds      map[string]kindStats `json:"kinds"`
		Tables     []tableStats         `json:"tables"`
	}{
		Packets: s.Packets, WakeOnLAN: s.WakeOnLAN, Alerts: s.Alerts, Suppressed: s.Suppressed, Open: s.Open,
		Kinds: make(map[string]kindStats, NumKinds), Tables: []tableStats{},
	}
	for k := range Kind(NumKinds) {
		ph := s.Phases[k]
		out.Kinds[k.String()] = kindStats{Incidents: s.Incidents[k], Start: ph[PhaseStart],
			Update: ph[PhaseUpdate], End: ph[PhaseEnd], Suppressed: s.SuppressedByKind[k]}
	}
	for _, t := range s.Tables {
		out.Tables = append(out.Tables, tableStats(t))
	}
	return json.Marshal(out)
}

// Stats returns the Engine's counters.
func (e *Engine) Stats() Stats {
	s := e.r.stats
	s.Packets, s.WakeOnLAN = e.packets, e.wol
	for _, a := range e.r.active {
		if !a.lifecycle().gone {
			s.Open++
		}
	}
	s.Tables = []TableStats{e.refl.hosts.stats()}
	if e.refl.prefixes != nil {
		s.Tables = append(s.Tables, e.refl.prefixes.stats())
	}
	s.Tables = append(s.Tables, e.refl.slotStats())
	s.Tables = append(s.Tables, e.loop.pairs.stats(), e.spoof.targets.stats(),
		e.scan.scanners.stats(), e.expo.found.stats())
	return s
}

// isWakeOnLAN reports whether p carries a Wake-on-LAN magic packet: six
// 0xff bytes, then one MAC address sixteen times (possibly followed by a
// SecureOn password). Such packets are sent to UDP 7 or 9 and are benign.
// A payload cut by the snap length is judged on what was captured.
func isWakeOnLAN(p *capture.Packet) bool {
	const size = 6 + 16*6
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

// isNmapProbe reports whether p is one of nmap's echo probes.
func isNmapProbe(p *capture.Packet) bool {
	if p.Fragment || p.PayloadLen != len(p.Payload) {
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
