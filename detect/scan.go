package detect

import (
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Scan detects one source sweeping the echo/chargen ports: UDP datagrams
// or TCP SYNs to scan.ports on scan.hosts distinct hosts within
// scan.window. UDP and TCP sweeps are separate findings with their own
// signatures. A scan is a finding: a start, no updates, and an end
// scan.rearm later (or at the end of the input) with the probes the
// scanner sent meanwhile. nmap's echo probes name the tool.
//
// The distinct hosts are counted in a bitmap per quarter of the window
// (linear counting over their union), so the count covers the last three
// quarters to the whole window and a scanner of millions of hosts costs a
// fixed kilobyte. The scan's own count of hosts adds up what each probe
// raised the window's count by: a host probed again after a quiet window
// counts again.
type Scan struct {
	cfg      *ScanConfig
	r        *reporter
	watched  PortSet // probed, as destination ports
	allow    prefixSet
	scanners *table[scanKey, scanner]
}

// scanKey is a scanner and the protocol it probes with, in its tenant.
type scanKey struct {
	src    netip.Addr
	proto  uint8
	tenant uint32
}

func (k scanKey) hash() uint64 {
	return hashAddr(k.src, (seedScanner+uint64(k.proto))^tenantSeed(k.tenant))
}

const (
	scanSlots = 4
	scanBits  = 2048
)

var _ detector = (*Scan)(nil)

func (d *Scan) info() kindInfo { return scanKind{} }

func (d *Scan) setup(sizes *Config, r *reporter) error {
	cfg := &sizes.Scan
	d.r = r
	var err error
	d.scanners, err = newTable("scan.scanners", cfg.MaxScanners, scanKey.hash, cfg.Window,
		func(s *scanner) bool { return r.evicted(s) })
	return err
}

func (d *Scan) configure(c *Config, s *settings) {
	d.cfg, d.watched, d.allow = &c.Scan, s.scanPorts, s.allow[KindScan]
}

func (d *Scan) wants() wanted { return wanted{to: &d.watched} }

func (d *Scan) tables(ts []TableStats) []TableStats { return append(ts, d.scanners.stats()) }

// packet takes the TCP packets and the UDP packets not from a service port
// to one of its ports.
func (d *Scan) packet(pv *view) {
	p := pv.p
	if !d.watched.Has(p.DstPort) || pv.srcSvc {
		return
	}
	if p.Proto == capture.ProtoTCP && p.TCPFlags&(capture.TCPSyn|capture.TCPAck) != capture.TCPSyn {
		return
	}
	if p.Fragment && p.FragOffset > 0 {
		return // the rest of a datagram, not a probe
	}
	if d.allow.contains(p.Src) || d.allow.contains(p.Dst) {
		return
	}
	now := p.Timestamp
	k := scanKey{p.Src, p.Proto, p.Tenant}
	s, made := d.scanners.getOrAdd(k, now)
	if s == nil {
		return
	}
	if made {
		*s = scanner{d: d, k: k}
	}
	s.count(p)
	if s.targets >= d.cfg.Hosts && !s.t.open {
		d.r.oneShot(s, now, d.cfg.Rearm)
	} else {
		d.r.follow(&s.t) // before its scan, or in it
	}
}

// scanner is the state of one source and protocol.
type scanner struct {
	d       *Scan
	k       scanKey
	t       track
	slot    int64 // index of the newest quarter window
	seen    [scanSlots][scanBits / 64]uint64
	targets int // distinct hosts in the window, an estimate
	probed  int // distinct hosts of the activity, an estimate (see Scan)
	ports   portList
	nmap    bool
	last    netip.AddrPort // the latest target
	sport   uint16
}

var _ subject = (*scanner)(nil)

func (s *scanner) count(p *capture.Packet) {
	w := s.d.cfg.Window
	if s.t.fresh(p.Timestamp, w) {
		s.reset()
	}
	s.d.r.see(&s.t, p, w)
	if s.rotate(p.Timestamp) {
		s.recount() // lower: the hosts of the quarters left behind go
	}
	h := hashAddr(p.Dst, seedHost) & (scanBits - 1)
	cur := &s.seen[s.slot%scanSlots]
	if cur[h>>6]&(1<<(h&63)) == 0 {
		cur[h>>6] |= 1 << (h & 63)
		before := s.targets
		s.recount()
		s.probed += s.targets - before
	}
	s.ports.add(p.DstPort)
	if p.Proto == capture.ProtoUDP && isNmapProbe(p) {
		s.nmap = true
	}
	s.last, s.sport = p.DstAddrPort(), p.SrcPort
}

// rotate clears the quarter windows that now has left behind and reports
// whether it cleared any.
func (s *scanner) rotate(now time.Time) bool {
	idx := now.UnixNano() / int64(s.d.cfg.Window/scanSlots)
	gap := idx - s.slot
	if gap <= 0 {
		return false
	}
	for i := int64(1); i <= min(gap, scanSlots); i++ {
		s.seen[(s.slot+i)%scanSlots] = [scanBits / 64]uint64{}
	}
	s.slot = idx
	return true
}

func (s *scanner) recount() {
	n := 0
	for i := range scanBits / 64 {
		var w uint64
		for j := range scanSlots {
			w |= s.seen[j][i]
		}
		n += bits.OnesCount64(w)
	}
	s.targets = int(bitmapCount(n, scanBits) + 0.5)
}

func (s *scanner) lifecycle() *track { return &s.t }
func (s *scanner) kind() Kind        { return KindScan }
func (s *scanner) key() string {
	return withTenant(protoName(s.k.proto)+"/"+s.k.src.String(), s.k.tenant)
}

// measure returns the scanner's average probe rate over its activity.
func (s *scanner) measure(time.Time) (bool, float64, float64) {
	d := max(s.t.last.Sub(s.t.first).Seconds(), 1)
	return false, float64(s.t.packets) / d, float64(s.t.bytes) * 8 / d
}

func (s *scanner) reset() {
	s.seen = [scanSlots][scanBits / 64]uint64{}
	s.targets, s.probed, s.ports, s.nmap = 0, 0, portList{}, false
}

func (s *scanner) describe(a *Alert) {
	in := &a.Incident
	a.Src, a.Dst, a.Proto, a.Tenant = netip.AddrPortFrom(s.k.src, s.sport), s.last, s.k.proto, s.k.tenant
	a.Signature = sig(SIDScanUDP)
	if s.k.proto == capture.ProtoTCP {
		a.Signature = sig(SIDScanTCP)
	}
	in.Targets = s.probed
	in.Ports = append(in.Ports, s.ports.ports()...)
	in.Tool = "unknown"
	if s.nmap {
		in.Tool = "nmap"
	}
	in.Direction = s.d.r.direction(s.k.src, s.last.Addr())
}

// scanKind describes scans to the renderers.
type scanKind struct{}

func (scanKind) kind() Kind   { return KindScan }
func (scanKind) name() string { return "scan" }

// sides: the scanner, and the latest host it probed.
func (scanKind) sides(a *Alert) (source, target netip.AddrPort) { return a.Src, a.Dst }

func (scanKind) key(a *Alert) string {
	return protoName(a.Proto) + "/" + a.Src.Addr().String()
}

func (scanKind) appendEVE(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = appendUintField(b, "targets", uint64(in.Targets))
	b = append(b, `,"ports":[`...)
	for i, p := range in.Ports {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	b = append(b, `],"tool":`...)
	return appendJSONString(b, in.Tool)
}

func (scanKind) appendText(b []byte, a *Alert) []byte {
	in := &a.Incident
	b = append(b, protoName(a.Proto)...)
	b = append(b, " scan "...)
	b = append(b, in.Phase.String()...)
	b = append(b, " by "...)
	b = append(b, a.Src.Addr().String()...)
	b = append(b, " of "...)
	b = strconv.AppendInt(b, int64(in.Targets), 10)
	b = append(b, " hosts on port"...)
	if len(in.Ports) != 1 {
		b = append(b, 's')
	}
	for i, p := range in.Ports {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	b = append(b, " tool "...)
	return append(b, in.Tool...)
}

func (scanKind) headline(a *Alert) Headline {
	in := &a.Incident
	n := in.Targets
	l := Headline{Detail: plural(n, "target"), Targets: &n, Ports: slices.Clone(in.Ports), Tool: in.Tool}
	if in.Tool != "" {
		l.Detail += ", " + in.Tool
	}
	return l
}
