package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// A Datagram is one UDP datagram of router telemetry: an sFlow, NetFlow or
// IPFIX export.
//
// Data is borrowed: it stays valid until the next ReadDatagram on the
// DatagramSource that filled it.
type Datagram struct {
	Data      []byte
	From      netip.Addr // the exporter: the datagram's source address
	Port      uint16     // the port it was sent to
	Timestamp time.Time  // when it arrived (a capture file's frame time)
	// Accept says which formats the socket it came in on takes (a
	// --sflow or a --netflow socket); TelemetryNone takes any.
	Accept TelemetryFormat
}

// A DatagramSource delivers telemetry datagrams in arrival order. It has
// the contract of a Source: ReadDatagram returns io.EOF at the end, and
// ErrTimeout for a live source when none came within its read timeout.
type DatagramSource interface {
	ReadDatagram(d *Datagram) error
	Close() error
}

// TelemetryConfig says whose telemetry counts and bounds what is kept per
// exporter. sFlow and NetFlow have no authentication: anyone who can send
// a UDP datagram to the collector is an exporter.
type TelemetryConfig struct {
	// Exporters lists the routers whose telemetry counts, with the
	// interfaces that count on each.
	Exporters []ExporterConfig
	// AllowUnknown counts the telemetry of exporters not listed too, on
	// every interface.
	AllowUnknown bool
	// MaxExporters bounds the exporters kept (counters, templates,
	// sequence numbers); 0 is DefaultMaxExporters. The least recently
	// heard is forgotten first.
	MaxExporters int
	// MaxTemplates bounds the NetFlow v9 and IPFIX templates kept per
	// exporter; 0 is DefaultMaxTemplates. A template past the bound is
	// refused (counted), the ones known stay.
	MaxTemplates int
	// HoldBack is how long the frames wait to be put in time order (see
	// reorder) after their datagram arrived; below 0, until the end of
	// the input: a capture of exports replayed, where a record's flow is
	// put back at its own time however long before its export it ended.
	// Live, 0 puts every record at its arrival, and detection credits
	// its average rate over one window; above 0, a frame older than the
	// hold-back when it comes is put at arrival less the hold-back, and
	// counted Late. Time never runs backward in what ReadFrame delivers.
	HoldBack time.Duration
	// Reorder bounds the frames that wait; 0 is DefaultReorder.
	Reorder int
}

// ExporterConfig is one router whose telemetry counts.
type ExporterConfig struct {
	Addr netip.Addr
	// Interfaces are the ifIndexes whose traffic counts: a sample or
	// record counts when it entered the router on one of them (the
	// ingress of edge links, so that a packet sampled on two routers
	// counts once). Empty: every interface.
	Interfaces []uint32
	// Sampling, above 0, is the rate to apply in place of what the
	// exporter reports (1: unsampled).
	Sampling uint32
}

// The bounds' defaults.
const (
	DefaultMaxExporters = 1024
	DefaultMaxTemplates = 256
	DefaultReorder      = 1 << 16
	// maxSamplingRate is the largest sampling rate believed: routers
	// sample 1 in at most a few hundred thousand, and the estimates of a
	// rate of 2^32-1 would overflow the counters they feed.
	maxSamplingRate = 1 << 24
	// maxRecordPackets bounds one record's packets, so that packets times
	// rate stays far from overflowing.
	maxRecordPackets = 1 << 36
	// futureSlack is how far past its export a record's end may lie.
	futureSlack = time.Minute
)

// TelemetryDrop says why a datagram, sample or record did not count.
type TelemetryDrop uint8

// The reasons, as the stats name them.
const (
	TelemetryUnknownExporter  TelemetryDrop = iota // an exporter not allowed: its datagram
	TelemetryWrongFormat                           // a datagram of a format its socket does not take, or of none
	TelemetryNotUDP                                // a frame of a telemetry capture that is not a whole UDP datagram (fragment, cut)
	TelemetryMalformed                             // a datagram the decoder refused, or cut short of what its headers declare
	TelemetryTemplateMissing                       // a data set whose template is not known (yet)
	TelemetryTemplateLimit                         // a template refused: its exporter has MaxTemplates, or it has too many fields
	TelemetrySamplingInvalid                       // a sample or record whose sampling rate is 0 or past belief
	TelemetryTimeInvalid                           // a record that ends before it starts or far after its export
	TelemetryInterfaceIgnored                      // a sample or record from an interface that does not count
	TelemetryNotIP                                 // a sample or record with no IP packet (other header protocols, MAC-only records)
	numTelemetryDrops
)

var telemetryDropNames = [numTelemetryDrops]string{
	TelemetryUnknownExporter:  "unknown_exporter",
	TelemetryWrongFormat:      "wrong_format",
	TelemetryNotUDP:           "not_udp",
	TelemetryMalformed:        "malformed",
	TelemetryTemplateMissing:  "template_missing",
	TelemetryTemplateLimit:    "template_limit",
	TelemetrySamplingInvalid:  "sampling_invalid",
	TelemetryTimeInvalid:      "time_invalid",
	TelemetryInterfaceIgnored: "interface_ignored",
	TelemetryNotIP:            "not_ip",
}

// String names the reason as the stats do.
func (r TelemetryDrop) String() string {
	if r < numTelemetryDrops {
		return telemetryDropNames[r]
	}
	return "unknown"
}

// TelemetryDropNames lists the reasons' names, indexed by TelemetryDrop.
func TelemetryDropNames() []string { return telemetryDropNames[:] }

// TelemetryStats are a Telemetry source's counters.
type TelemetryStats struct {
	Datagrams uint64 // datagrams read
	Samples   uint64 // sFlow flow samples that counted
	Records   uint64 // NetFlow/IPFIX flow records that counted
	// Dropped counts by reason what did not count: datagrams for the
	// first three reasons and malformed, samples or records for the rest.
	Dropped [numTelemetryDrops]uint64
	// Exporters holds the exporters heard from, by address; Evicted
	// counts those pushed out by MaxExporters.
	Exporters []ExporterStats
	Evicted   uint64
	// Early counts the frames that left the reorder heap before their
	// time because it was full: they count at a later time than their own.
	Early uint64
	// Late counts the frames that came after their time had gone by:
	// older than the hold-back (above 0), or behind a frame that left
	// early. They count at that time rather than their own, so that time
	// never runs backward.
	Late uint64
}

// ExporterStats are the counters of one exporter.
type ExporterStats struct {
	Addr      netip.Addr
	Datagrams uint64
	Samples   uint64 // sFlow flow samples that counted
	Records   uint64 // flow records that counted
	Rate      uint32 // the sampling rate of its latest sample or record
	// SequenceGaps counts the breaks in its sequence numbers, and Lost
	// what they skipped: datagrams for sFlow and NetFlow v9, flows for
	// NetFlow v5, data records for IPFIX.
	SequenceGaps, Lost uint64
	TemplateMisses     uint64 // data sets that came before their template
	Malformed          uint64 // its datagrams the decoder refused
}

// exporter is what a Telemetry source keeps per exporter.
type exporter struct {
	ExporterStats
	cfg     *ExporterConfig // nil: not listed (AllowUnknown)
	tmpl    templates
	domains [maxDomains]domain
	nd      int
}

// maxDomains bounds the sequence and sampling state kept per exporter:
// sFlow sub-agents, NetFlow v9 source ids, IPFIX observation domains.
const maxDomains = 8

// domain is the sequence and sampling state of one sub-agent, source id or
// observation domain of an exporter.
type domain struct {
	format TelemetryFormat
	id     uint32
	// The sequence number of the datagram before, and the units it held
	// (lo to hi, see sequence), once seen; after: the exporter numbers a
	// datagram by the units up to its end, once known.
	prev, lo, hi       uint32
	seen, after, known bool
	rate               uint32 // from an options record; 0: none seen
	init               uint64 // the exporter's boot, Unix ms, from an options record
	// An sFlow sub-agent's flushes (see domain.flushed): when its latest
	// datagram and the first of its latest flush arrived (Unix ns, 0:
	// none yet), the datagrams of that flush, the last datagram and the
	// datagrams of the flush before, and the time the latest flush's
	// samples took.
	last, flush, prevLast int64
	n, prevN              uint32
	span                  time.Duration
}

// domain returns the state of the exporter's domain id in format f,
// taking the oldest slot when all are used.
func (e *exporter) domain(f TelemetryFormat, id uint32) *domain {
	for i := range e.domains[:e.nd] {
		if d := &e.domains[i]; d.format == f && d.id == id {
			return d
		}
	}
	var d *domain
	if e.nd < maxDomains {
		d = &e.domains[e.nd]
		e.nd++
	} else {
		copy(e.domains[:], e.domains[1:])
		d = &e.domains[maxDomains-1]
	}
	*d = domain{format: f, id: id}
	return d
}

// sequence checks the sequence number of a datagram that holds lo to hi
// units against the datagram's before. Exporters number a datagram by the
// units before it (the RFCs), or by those up to its end (softflowd's
// IPFIX), and count IPFIX options records (RFC 7011) or not (softflowd):
// lo and hi are the datagram's units without and with them. A number that
// fits either way is in sequence, and the way it fitted says how much a
// gap after it lost.
func (e *exporter) sequence(d *domain, seq, lo, hi uint32) {
	if d.seen {
		// The units between the two numbers, which either numbering
		// puts in a range: the datagram before's, or this one's. Each
		// compare is in uint32, to be safe from wrapping.
		diff := seq - d.prev
		before, after := diff-d.lo <= d.hi-d.lo, diff-lo <= hi-lo
		if before != after {
			d.after, d.known = after, true
		}
		expect := d.hi
		switch {
		case !d.known:
			// A gap counts the least it can have lost.
			expect = max(d.hi, hi)
		case d.after:
			expect = hi
		}
		// A number behind the expected one is a restart or a reordered
		// datagram, not a loss.
		if gap := diff - expect; !before && !after && diff < 1<<31 && gap < 1<<31 {
			e.SequenceGaps++
			e.Lost += uint64(gap)
		}
	}
	d.seen, d.prev, d.lo, d.hi = true, seq, lo, hi
}

// Telemetry is a Source of the packets that router telemetry reports: it
// reads datagrams (sFlow v5, NetFlow v5 and v9, IPFIX) from a
// DatagramSource, decodes them with goflow2's decoders, and delivers each
// sFlow flow sample's packet header as a frame, and each flow record as a
// frame built from its addresses, ports and lengths, with Frame.Sample
// saying what it stands for. A sample's frame carries its datagram's
// arrival time; a record's, the time its flow ended on the clock of
// arrival (see netflowReader.when), no earlier than the release clock (see
// reorder).
//
// It belongs to one goroutine, as a Source does; Stats too.
type Telemetry struct {
	in    DatagramSource
	cfg   TelemetryConfig
	allow map[netip.Addr]*ExporterConfig

	exporters *simplelru.LRU[netip.Addr, *exporter]
	pool      fieldPool // the template fields all exporters may hold
	stats     TelemetryStats

	dg  Datagram
	cur *exporter
	sf  sflowReader
	nf  netflowReader
	ord *reorder
	end error // the input's end (io.EOF or a failure), once met
	// next is the frame a reader delivered, on its way into ord.
	next Frame
	// frame is where a flow record's packet is built.
	frame [recordFrameSize]byte
}

var _ Source = (*Telemetry)(nil)

// NewTelemetry returns a Telemetry source that reads in. It validates cfg
// and does no I/O.
func NewTelemetry(cfg TelemetryConfig, in DatagramSource) (*Telemetry, error) {
	if cfg.MaxExporters == 0 {
		cfg.MaxExporters = DefaultMaxExporters
	}
	if cfg.MaxTemplates == 0 {
		cfg.MaxTemplates = DefaultMaxTemplates
	}
	if cfg.Reorder == 0 {
		cfg.Reorder = DefaultReorder
	}
	if cfg.MaxExporters < 0 || cfg.MaxTemplates < 0 || cfg.Reorder < 0 {
		return nil, errors.New("capture: telemetry: negative bound")
	}
	t := &Telemetry{in: in, cfg: cfg, allow: make(map[netip.Addr]*ExporterConfig, len(cfg.Exporters))}
	for i := range cfg.Exporters {
		x := &cfg.Exporters[i]
		if !x.Addr.IsValid() {
			return nil, errors.New("capture: telemetry: exporter without an address")
		}
		if x.Sampling > maxSamplingRate {
			return nil, fmt.Errorf("capture: telemetry: exporter %s: sampling %d is past %d", x.Addr, x.Sampling, maxSamplingRate)
		}
		x.Interfaces = slices.Clone(x.Interfaces)
		slices.Sort(x.Interfaces)
		t.allow[x.Addr.Unmap()] = x
	}
	var err error
	t.exporters, err = simplelru.NewLRU[netip.Addr, *exporter](cfg.MaxExporters, func(_ netip.Addr, e *exporter) {
		t.stats.Evicted++
		e.tmpl.release()
	})
	if err != nil {
		return nil, fmt.Errorf("capture: telemetry: %w", err)
	}
	t.ord = newReorder(cfg.Reorder, cfg.HoldBack)
	t.pool.left = maxPoolFields
	return t, nil
}

// ReadFrame implements Source: it fills f with the next sample or record
// that counts, in time order, reading datagrams as needed.
func (t *Telemetry) ReadFrame(f *Frame) error {
	for {
		full := len(t.ord.free) == 0
		if t.ord.ready(t.end != nil || full) {
			if full && t.end == nil {
				t.stats.Early++
			}
			t.ord.pop(f)
			return nil
		}
		if t.end != nil {
			return t.end
		}
		if t.cur != nil {
			n := &t.next
			var ok bool
			if t.dg.format() == TelemetrySFlow {
				ok = t.sf.next(t, n)
				n.Timestamp = t.dg.Timestamp
			} else {
				ok = t.nf.next(t, n)
			}
			if ok {
				n.Sample.Exporter = t.dg.From
				t.hold(n)
				continue
			}
			t.cur = nil
		}
		err := t.in.ReadDatagram(&t.dg)
		switch {
		case err == nil:
			t.ord.arrived(t.dg.Timestamp)
			t.datagram()
		case errors.Is(err, ErrTimeout):
			// Live and quiet: what waits goes on by the wall clock.
			t.ord.arrived(time.Now())
			if !t.ord.ready(false) {
				return err
			}
		default:
			t.end = err
		}
	}
}

// hold puts frame n in time order: a flow record, replayed, spread over
// its span (see pieceWidth). Room was made for it before it was read.
func (t *Telemetry) hold(n *Frame) {
	t.ord.push(n, t.ord.hold < 0)
}

// datagram looks at the datagram just read: whose it is and what format,
// and has the format's reader decode it. t.cur is set when it has samples
// or records to deliver.
func (t *Telemetry) datagram() {
	t.stats.Datagrams++
	d := &t.dg
	d.From = d.From.Unmap()
	x, listed := t.allow[d.From]
	if !listed && !t.cfg.AllowUnknown {
		t.stats.Dropped[TelemetryUnknownExporter]++
		return
	}
	f := d.format()
	if f == TelemetryNone || d.Accept != TelemetryNone && !d.Accept.takes(f) {
		t.stats.Dropped[TelemetryWrongFormat]++
		return
	}
	e, ok := t.exporters.Get(d.From)
	if !ok {
		e = &exporter{ExporterStats: ExporterStats{Addr: d.From}, cfg: x}
		e.tmpl.max, e.tmpl.pool = t.cfg.MaxTemplates, &t.pool
		t.exporters.Add(d.From, e)
	}
	e.Datagrams++
	var err error
	if f == TelemetrySFlow {
		err = t.sf.decode(t, e, d)
	} else {
		err = t.nf.decode(t, e, d, f)
	}
	if err != nil {
		t.stats.Dropped[TelemetryMalformed]++
		e.Malformed++
		return
	}
	t.cur = e
}

// format tells the datagram's format by its first bytes: sFlow's version
// is a 32-bit 5, NetFlow's and IPFIX's a 16-bit 5, 9 or 10.
func (d *Datagram) format() TelemetryFormat {
	b := d.Data
	if len(b) < 4 {
		return TelemetryNone
	}
	if b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 5 {
		return TelemetrySFlow
	}
	switch uint16(b[0])<<8 | uint16(b[1]) {
	case 5:
		return TelemetryNetFlow5
	case 9:
		return TelemetryNetFlow9
	case 10:
		return TelemetryIPFIX
	}
	return TelemetryNone
}

// takes reports whether a socket for format a takes datagrams of format f:
// a NetFlow socket takes all of NetFlow's versions and IPFIX.
func (a TelemetryFormat) takes(f TelemetryFormat) bool {
	if a == TelemetrySFlow || f == TelemetrySFlow {
		return a == f
	}
	return true
}

// counts reports whether traffic that entered exporter e on interface in
// counts, counting it when it does not.
func (t *Telemetry) counts(e *exporter, in uint32) bool {
	if e.cfg == nil || len(e.cfg.Interfaces) == 0 {
		return true
	}
	if _, ok := slices.BinarySearch(e.cfg.Interfaces, in); ok {
		return true
	}
	t.stats.Dropped[TelemetryInterfaceIgnored]++
	return false
}

// rate returns the sampling rate to apply to what exporter e reported at
// rate r (0: none reported, which counts as unsampled), and false, counted,
// when r is past belief.
func (t *Telemetry) rate(e *exporter, r uint32) (uint32, bool) {
	if e.cfg != nil && e.cfg.Sampling > 0 {
		r = e.cfg.Sampling
	}
	if r > maxSamplingRate {
		t.stats.Dropped[TelemetrySamplingInvalid]++
		return 0, false
	}
	e.Rate = max(r, 1)
	return e.Rate, true
}

// Stats returns the counters, the caller's copy, with the exporters by
// address. Call it on the goroutine that reads the frames.
func (t *Telemetry) Stats() TelemetryStats {
	s := t.stats
	s.Late = t.ord.late
	s.Exporters = make([]ExporterStats, 0, t.exporters.Len())
	for _, e := range t.exporters.Values() {
		s.Exporters = append(s.Exporters, e.ExporterStats)
	}
	slices.SortFunc(s.Exporters, func(a, b ExporterStats) int { return a.Addr.Compare(b.Addr) })
	return s
}

// Close closes the DatagramSource.
func (t *Telemetry) Close() error { return t.in.Close() }

// linkTypeOf returns the raw link type for an IP packet of version 4 or 6.
func rawLinkType(is4 bool) layers.LinkType {
	if is4 {
		return layers.LinkTypeIPv4
	}
	return layers.LinkTypeIPv6
}

// saturating returns a*b, or the largest uint64 when that overflows.
func saturating(a, b uint64) uint64 {
	if a != 0 && b > ^uint64(0)/a {
		return ^uint64(0)
	}
	return a * b
}

// Unwrap returns the capture file source the datagrams are read from, if
// any: its counters are the files'.
func (t *Telemetry) Unwrap() Source {
	if c, ok := t.in.(*CapturedDatagrams); ok {
		return c.src
	}
	return nil
}
