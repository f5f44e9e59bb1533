package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"
)

// netflowReader delivers the flow records of a NetFlow v5, NetFlow v9 or
// IPFIX datagram: v5's as goflow2's decoder reads them, v9's and IPFIX's
// as nfMessage reads them in place (goflow2 parsing the templates): each
// record becomes a frame built from its addresses, ports and lengths that
// stands for its packets and bytes, the sampling rate applied, spread
// over its duration.
type netflowReader struct {
	v5  netflowlegacy.PacketNetFlowV5
	buf bytes.Buffer
	msg nfMessage
	rb  recordBuilder

	format TelemetryFormat
	// The datagram's clock: the export time, and for v5 and v9 the
	// exporter's uptime then (records' times count from its boot).
	export time.Time
	uptime uint32
	dom    *domain
	i      int // v5: the next record
}

// errTemplateLimit is what the template store returns for a template past
// its bound.
var errTemplateLimit = errors.New("template limit")

// errCut refuses a datagram cut short of what its headers declare.
var errCut = errors.New("datagram cut short of its headers' lengths")

// decode reads the datagram d of format f from exporter e, checks its
// sequence and notes the sampling rates its options records give.
func (r *netflowReader) decode(t *Telemetry, e *exporter, d *Datagram, f TelemetryFormat) error {
	r.format, r.i = f, 0
	r.msg.dsets, r.msg.set = r.msg.dsets[:0], 0
	if !netflowFits(d.Data, f) {
		return errCut
	}
	be := binary.BigEndian
	b := d.Data
	var err error
	switch f {
	case TelemetryNetFlow5:
		r.buf = *bytes.NewBuffer(b)
		r.v5 = netflowlegacy.PacketNetFlowV5{}
		if err := netflowlegacy.DecodeMessageVersion(&r.buf, &r.v5); err != nil {
			return err
		}
		r.export = time.Unix(int64(r.v5.UnixSecs), int64(r.v5.UnixNSecs%1e9)).UTC()
		r.uptime = r.v5.SysUptime
		r.dom = e.domain(f, uint32(r.v5.EngineType)<<8|uint32(r.v5.EngineId))
		e.sequence(r.dom, r.v5.FlowSequence, uint32(len(r.v5.Records)), uint32(len(r.v5.Records)))
		// The header's sampling interval: the mode in the top two bits,
		// the interval in the other fourteen.
		r.dom.rate = uint32(r.v5.SamplingInterval & 0x3fff)
		return nil
	case TelemetryNetFlow9:
		// version, count, sysUptime, unix_secs, sequence, source id
		r.uptime = be.Uint32(b[4:])
		r.export = time.Unix(int64(be.Uint32(b[8:])), 0).UTC()
		id := be.Uint32(b[16:])
		r.dom = e.domain(f, id)
		e.tmpl.misses = 0
		err = r.msg.walk(e, r.dom, b[20:], 9, id, int(be.Uint16(b[2:])))
		if err = r.setsErr(t, e, err); err != nil {
			return err
		}
		e.sequence(r.dom, be.Uint32(b[12:]), 1, 1)
	case TelemetryIPFIX:
		// version, length, export time, sequence, observation domain
		r.export = time.Unix(int64(be.Uint32(b[4:])), 0).UTC()
		id := be.Uint32(b[12:])
		r.dom = e.domain(f, id)
		e.tmpl.misses = 0
		err = r.msg.walk(e, r.dom, b[16:be.Uint16(b[2:])], 10, id, -1)
		whole := err == nil && !r.msg.missing
		if err = r.setsErr(t, e, err); err != nil {
			return err
		}
		// The sequence counts data records; options data records too in
		// RFC 7011 (section 3.1: all Data Records), not in softflowd.
		m := &r.msg
		e.sequence(r.dom, be.Uint32(b[8:]), m.records, m.records+m.optionRecords)
		if !whole {
			// Sets whose template is unknown or was refused hold records
			// that cannot be counted: the next sequence number is not
			// known, and is taken as it comes rather than seen as a gap.
			r.dom.seen = false
		}
	}
	return nil
}

// setsErr sorts the walk's error: data sets that came before their
// template were counted by the template store and passed over; a template
// past the bound is counted and refused, as are the sets after it; any
// other error refuses the datagram.
func (r *netflowReader) setsErr(t *Telemetry, e *exporter, err error) error {
	if e.tmpl.misses > 0 {
		e.TemplateMisses += e.tmpl.misses
		t.stats.Dropped[TelemetryTemplateMissing] += e.tmpl.misses
	}
	if errors.Is(err, errTemplateLimit) {
		t.stats.Dropped[TelemetryTemplateLimit]++
		return nil
	}
	return err
}

// next fills f with the next record that counts.
func (r *netflowReader) next(t *Telemetry, f *Frame) bool {
	var rec flowRecord
	for {
		if r.format == TelemetryNetFlow5 {
			if r.i >= len(r.v5.Records) {
				return false
			}
			rec = r.fromV5(&r.v5.Records[r.i])
			r.i++
		} else {
			if !r.msg.next(&r.rb) {
				return false
			}
			rec = r.rb.record(r.dom.init)
		}
		if r.deliver(t, &rec, f) {
			return true
		}
	}
}

// netflowFits reports whether a NetFlow v5 or v9 or IPFIX datagram holds
// what its headers declare. goflow2's decoders read what is there and stop
// quietly at a record or set cut short, which would count a truncated
// datagram as whole; and its v5 decoder makes as many records as the
// header counts, zero ones where the datagram holds none, which would
// deliver 65535 flows of 0.0.0.0 from 24 bytes.
func netflowFits(b []byte, f TelemetryFormat) bool {
	be := binary.BigEndian
	switch f {
	case TelemetryNetFlow5:
		return len(b) >= 24 && (len(b)-24)/48 >= int(be.Uint16(b[2:]))
	case TelemetryNetFlow9:
		// The decoder reads as many flow sets as the header's count.
		return len(b) >= 20 && setsFit(b[20:], int(be.Uint16(b[2:])))
	case TelemetryIPFIX:
		n := 0
		if len(b) >= 16 {
			n = int(be.Uint16(b[2:]))
		}
		return n >= 16 && n <= len(b) && setsFit(b[16:n], -1)
	}
	return false
}

// setsFit reports whether the first max flow sets in b (-1: all) lie
// within it: each has a header, and a length that covers it and ends in b.
func setsFit(b []byte, max int) bool {
	for i := 0; (max < 0 || i < max) && len(b) > 0; i++ {
		if len(b) < 4 {
			return false
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// flowRecord is what a record says that detection uses.
type flowRecord struct {
	src, dst         netip.Addr
	sport, dport     uint16
	proto, tcpFlags  uint8
	in, out          uint32
	packets, bytes   uint64
	rate             uint32
	hasRate          bool
	start, end       int64 // Unix ns, or uptime ms with uptime
	uptime, hasTimes bool
	bad              bool // times that contradict each other
	duration         time.Duration
	hasDuration      bool
}

func (r *netflowReader) fromV5(v *netflowlegacy.RecordsNetFlowV5) flowRecord {
	var a, b [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(v.SrcAddr))
	binary.BigEndian.PutUint32(b[:], uint32(v.DstAddr))
	return flowRecord{src: netip.AddrFrom4(a), dst: netip.AddrFrom4(b), sport: v.SrcPort, dport: v.DstPort,
		proto: v.Proto, tcpFlags: v.TCPFlags, in: uint32(v.Input), out: uint32(v.Output),
		packets: uint64(v.DPkts), bytes: uint64(v.DOctets),
		start: int64(v.First), end: int64(v.Last), uptime: true, hasTimes: true}
}

// The information elements a record is read for (IANA's IPFIX numbers,
// which NetFlow v9 shares for these).
const (
	ieOctets          = netflow.IPFIX_FIELD_octetDeltaCount
	iePackets         = netflow.IPFIX_FIELD_packetDeltaCount
	ieOctetsTotal     = netflow.IPFIX_FIELD_octetTotalCount
	iePacketsTotal    = netflow.IPFIX_FIELD_packetTotalCount
	ieProto           = netflow.IPFIX_FIELD_protocolIdentifier
	ieTCPFlags        = netflow.IPFIX_FIELD_tcpControlBits
	ieSrcPort         = netflow.IPFIX_FIELD_sourceTransportPort
	ieSrc4            = netflow.IPFIX_FIELD_sourceIPv4Address
	ieIn              = netflow.IPFIX_FIELD_ingressInterface
	ieDstPort         = netflow.IPFIX_FIELD_destinationTransportPort
	ieDst4            = netflow.IPFIX_FIELD_destinationIPv4Address
	ieOut             = netflow.IPFIX_FIELD_egressInterface
	ieSrc6            = netflow.IPFIX_FIELD_sourceIPv6Address
	ieDst6            = netflow.IPFIX_FIELD_destinationIPv6Address
	ieEndUptime       = netflow.IPFIX_FIELD_flowEndSysUpTime
	ieStartUptime     = netflow.IPFIX_FIELD_flowStartSysUpTime
	ieSampling        = netflow.IPFIX_FIELD_samplingInterval
	ieSamplerRandom   = netflow.IPFIX_FIELD_samplerRandomInterval
	ieStartSec        = netflow.IPFIX_FIELD_flowStartSeconds
	ieEndSec          = netflow.IPFIX_FIELD_flowEndSeconds
	ieStartMilli      = netflow.IPFIX_FIELD_flowStartMilliseconds
	ieEndMilli        = netflow.IPFIX_FIELD_flowEndMilliseconds
	ieStartMicro      = netflow.IPFIX_FIELD_flowStartMicroseconds
	ieEndMicro        = netflow.IPFIX_FIELD_flowEndMicroseconds
	ieStartNano       = netflow.IPFIX_FIELD_flowStartNanoseconds
	ieEndNano         = netflow.IPFIX_FIELD_flowEndNanoseconds
	ieDurationMilli   = netflow.IPFIX_FIELD_flowDurationMilliseconds
	ieDurationMicro   = netflow.IPFIX_FIELD_flowDurationMicroseconds
	iePacketInterval  = netflow.IPFIX_FIELD_samplingPacketInterval
	iePacketSpace     = netflow.IPFIX_FIELD_samplingPacketSpace
	ieSystemInitMilli = netflow.IPFIX_FIELD_systemInitTimeMilliseconds
)

// clampRate makes a sampling interval of any width a uint32, keeping a
// rate past belief past it (so that it is refused, not wrapped).
func clampRate(n uint64) uint32 {
	return uint32(min(n, maxSamplingRate+1))
}

// beUint reads a big-endian unsigned integer of up to 8 bytes (IPFIX's
// reduced-size encoding sends counters in fewer).
func beUint(b []byte) uint64 {
	if len(b) > 8 {
		return 0
	}
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n
}

// ntpNanos converts an NTP timestamp (seconds since 1900 in the high 32
// bits, a binary fraction in the low) to Unix nanoseconds.
func ntpNanos(n uint64) int64 {
	const ntpToUnix = 2208988800
	sec := int64(n>>32) - ntpToUnix
	frac := int64((n & 0xffffffff) * 1e9 >> 32)
	return sec*1e9 + frac
}

// deliver checks a record and, when it counts, fills f with a packet
// built from it.
func (r *netflowReader) deliver(t *Telemetry, rec *flowRecord, f *Frame) bool {
	e := t.cur
	if !rec.src.IsValid() || !rec.dst.IsValid() || rec.src.Is4() != rec.dst.Is4() {
		t.stats.Dropped[TelemetryNotIP]++
		return false
	}
	span, ok := r.span(rec)
	if !ok {
		t.stats.Dropped[TelemetryTimeInvalid]++
		return false
	}
	rate := r.dom.rate
	if rec.hasRate {
		rate = rec.rate
	}
	if rec.hasRate && rate == 0 {
		t.stats.Dropped[TelemetrySamplingInvalid]++
		return false
	}
	if !t.counts(e, rec.in) {
		return false
	}
	if rate, ok = t.rate(e, rate); !ok {
		return false
	}
	pkts := min(max(rec.packets, 1), maxRecordPackets)
	bytes := min(rec.bytes, maxRecordPackets*65535)
	size := bytes / pkts
	*f = Frame{LinkType: rawLinkType(rec.src.Is4())}
	f.Data, f.Length = buildRecordFrame(&t.frame, rec, int(min(size, 65535)))
	f.CaptureLength = len(f.Data)
	f.Timestamp = r.when(rec, t.dg.Timestamp)
	f.Sample = Sampled{Format: r.format, InIf: rec.in, OutIf: rec.out, Rate: rate,
		Packets: saturating(pkts, uint64(rate)), Bytes: saturating(max(bytes, pkts*uint64(f.Length)), uint64(rate)),
		Span: span, Record: true}
	e.Records++
	t.stats.Records++
	return true
}

// maxAge bounds how long before its export a record's flow may have
// ended and still be put at its own time.
const maxAge = 24 * time.Hour

// when returns the time the record's flow ended, on the clock of arrival:
// the datagram arrived at, and the flow ended as long before its export
// as the exporter's clock says. Exporter and collector clocks need not
// agree: only the exporter's differences count. A record with no times
// ended as it arrived.
func (r *netflowReader) when(rec *flowRecord, at time.Time) time.Time {
	if !rec.hasTimes {
		return at
	}
	var ago time.Duration
	if rec.uptime {
		if r.format == TelemetryIPFIX {
			return at // uptimes with no boot time: nothing to count from
		}
		ago = time.Duration(r.uptime-uint32(rec.end)) * time.Millisecond
		if ago >= time.Duration(1<<31)*time.Millisecond {
			ago = 0
		}
	} else {
		ago = time.Duration(max(r.export.UnixNano()-rec.end, 0))
	}
	return at.Add(-min(ago, maxAge))
}

// span returns how long the record's packets took, and false for times
// that cannot be: an end before the start, or after the export.
func (r *netflowReader) span(rec *flowRecord) (time.Duration, bool) {
	if !rec.hasTimes {
		if rec.hasDuration {
			return rec.duration, true
		}
		return 0, true // a moment
	}
	if rec.uptime {
		// Milliseconds of the exporter's uptime, which wraps after 49.7
		// days: an end just past the wrap is after its start.
		d := uint32(rec.end) - uint32(rec.start)
		if d >= 1<<31 || r.format != TelemetryIPFIX && uint32(rec.end)-r.uptime < 1<<31 && uint32(rec.end)-r.uptime > uint32(futureSlack/time.Millisecond) {
			return 0, false
		}
		return time.Duration(d) * time.Millisecond, true
	}
	if rec.end < rec.start || rec.end > r.export.UnixNano()+int64(futureSlack) {
		return 0, false
	}
	return time.Duration(rec.end - rec.start), true
}

// recordFrameSize holds the largest packet headers a record is made into:
// IPv6 and TCP.
const recordFrameSize = 40 + 20

// buildRecordFrame writes into buf the headers of a packet of the record:
// IPv4 or IPv6, then UDP or TCP with its ports and flags, declaring size
// bytes in all (the record's average packet, at least the headers). It
// returns the headers and the packet's length. The rest of the packet, its
// payload, is what the record never had.
func buildRecordFrame(buf *[recordFrameSize]byte, rec *flowRecord, size int) ([]byte, int) {
	b := buf[:]
	clear(b)
	ip := 20
	if !rec.src.Is4() {
		ip = 40
	}
	l4 := 0
	switch rec.proto {
	case ProtoUDP:
		l4 = 8
	case ProtoTCP:
		l4 = 20
	}
	size = max(size, ip+l4)
	if size == 40 && !rec.src.Is4() {
		// An IPv6 payload length of 0 reads as a jumbogram's, which the
		// decoder refuses without its hop-by-hop option: a packet of
		// nothing but its header is given a byte of payload.
		size++
	}
	if rec.src.Is4() {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(min(size, 65535)))
		b[8] = 64 // no TTL in a record: a common one
		b[9] = rec.proto
		s, d := rec.src.As4(), rec.dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
	} else {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(min(size-40, 65535)))
		b[6] = rec.proto
		if rec.proto == 0 {
			// IPv6's next header 0 is a hop-by-hop options header, which
			// the decoder would look for; a record of no protocol (its
			// template had none) says "no next header".
			b[6] = 59
		}
		b[7] = 64
		s, d := rec.src.As16(), rec.dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
	}
	h := b[ip:]
	switch rec.proto {
	case ProtoUDP:
		binary.BigEndian.PutUint16(h[0:], rec.sport)
		binary.BigEndian.PutUint16(h[2:], rec.dport)
		binary.BigEndian.PutUint16(h[4:], uint16(min(size-ip, 65535)))
	case ProtoTCP:
		binary.BigEndian.PutUint16(h[0:], rec.sport)
		binary.BigEndian.PutUint16(h[2:], rec.dport)
		h[12] = 5 << 4
		h[13] = rec.tcpFlags
	}
	return b[:ip+l4], size
}

// templates is an exporter's NetFlow v9 and IPFIX templates, as goflow2's
// decoder stores and looks them up, bounded: a template past max, or of
// more than maxTemplateFields fields, is refused. It counts the look-ups
// that found none.
type templates struct {
	m      map[uint64]any
	max    int
	misses uint64
	// fields counts the fields its templates hold, which pool, shared by
	// every exporter's store, bounds together.
	fields int
	pool   *fieldPool
}

// fieldPool is what is left of the template fields all exporters' stores
// may hold together: MaxTemplates bounds one exporter's templates, and
// the pool all of them, so that a thousand exporters each sending their
// widest templates cannot take more than the pool's memory.
type fieldPool struct{ left int }

// maxPoolFields is the template fields a Telemetry source keeps in all:
// some 16 MiB; a real router's templates hold a few hundred.
const maxPoolFields = 1 << 20

// templateFields returns how many fields a stored template holds.
func templateFields(tmpl any) int {
	switch t := tmpl.(type) {
	case netflow.TemplateRecord:
		return len(t.Fields)
	case netflow.NFv9OptionsTemplateRecord:
		return len(t.Scopes) + len(t.Options)
	case netflow.IPFIXOptionsTemplateRecord:
		return len(t.Scopes) + len(t.Options)
	}
	return 0
}

// release gives the store's fields back to the pool: its exporter is
// forgotten.
func (s *templates) release() {
	if s.pool != nil {
		s.pool.left += s.fields
	}
	s.fields = 0
}

// account moves n fields (below 0: gives them back) from the pool to the
// store, and reports false, moving nothing, when the pool has too few.
func (s *templates) account(n int) bool {
	if s.pool != nil {
		if n > s.pool.left {
			return false
		}
		s.pool.left -= n
	}
	s.fields += n
	return true
}

var _ netflow.NetFlowTemplateSystem = (*templates)(nil)

func templateKey(version uint16, domain uint32, id uint16) uint64 {
	return uint64(version)<<48 | uint64(domain)<<16 | uint64(id)
}

// maxTemplateFields bounds a template's fields, so that MaxTemplates
// bounds the memory an exporter's templates hold: real templates have
// tens of fields, a forged one up to 16383.
const maxTemplateFields = 512

// errTemplateEmpty refuses a template whose records have no fixed length
// (no field of a length above 0, or only variable-length ones): goflow2's
// decoder reads a data set's records for as long as the set holds a
// record's fixed length, so of 0 forever, or until a variable-length
// field meets the set's end and fails the datagram.
var errTemplateEmpty = errors.New("template of records of no fixed length")

func (s *templates) AddTemplate(version uint16, domain uint32, id uint16, tmpl any) error {
	k := templateKey(version, domain, id)
	fields, size := templateFields(tmpl), 0
	switch t := tmpl.(type) {
	case netflow.TemplateRecord:
		size = netflow.GetTemplateSize(version, t.Fields)
	case netflow.NFv9OptionsTemplateRecord:
		size = netflow.GetTemplateSize(version, t.Scopes) + netflow.GetTemplateSize(version, t.Options)
	case netflow.IPFIXOptionsTemplateRecord:
		size = netflow.GetTemplateSize(version, t.Scopes) + netflow.GetTemplateSize(version, t.Options)
	}
	old, had := s.m[k]
	switch {
	case fields == 0:
		// IPFIX's template withdrawal (RFC 7011 section 8.1): a
		// template of no fields.
		if had {
			s.account(-templateFields(old))
			delete(s.m, k)
		}
		return nil
	case size == 0:
		return errTemplateEmpty
	case fields > maxTemplateFields:
		return errTemplateLimit
	case !had && len(s.m) >= s.max:
		return errTemplateLimit
	case !s.account(fields - templateFields(old)):
		return errTemplateLimit
	}
	if s.m == nil {
		s.m = make(map[uint64]any)
	}
	s.m[k] = tmpl
	return nil
}

func (s *templates) GetTemplate(version uint16, domain uint32, id uint16) (any, error) {
	if t, ok := s.m[templateKey(version, domain, id)]; ok {
		return t, nil
	}
	s.misses++
	return nil, netflow.ErrorTemplateNotFound
}

func (s *templates) RemoveTemplate(version uint16, domain uint32, id uint16) (any, error) {
	k := templateKey(version, domain, id)
	t, ok := s.m[k]
	if !ok {
		return nil, netflow.ErrorTemplateNotFound
	}
	s.account(-templateFields(t))
	delete(s.m, k)
	return t, nil
}

func (s *templates) GetTemplates() netflow.FlowBaseTemplateSet {
	out := make(netflow.FlowBaseTemplateSet, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}
