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
// IPFIX datagram, which goflow2's decoders read (v9 and IPFIX with the
// exporter's templates): each record becomes a frame built from its
// addresses, ports and lengths that stands for its packets and bytes, the
// sampling rate applied, spread over its duration.
type netflowReader struct {
	v5   netflowlegacy.PacketNetFlowV5
	v9   netflow.NFv9Packet
	ipfx netflow.IPFIXPacket
	buf  bytes.Buffer

	format TelemetryFormat
	// The datagram's clock: the export time, and for v5 and v9 the
	// exporter's uptime then (records' times count from its boot).
	export time.Time
	uptime uint32
	dom    *domain
	// The records left: v5's by index; v9's and IPFIX's by data set and
	// index in it.
	sets    []any
	set, i  int
	records []netflow.DataRecord
}

// errTemplateLimit is what the template store returns for a template past
// its bound.
var errTemplateLimit = errors.New("template limit")

// decode reads the datagram d of format f from exporter e, checks its
// sequence and notes the sampling rates its options records give.
func (r *netflowReader) decode(t *Telemetry, e *exporter, d *Datagram, f TelemetryFormat) error {
	r.buf = *bytes.NewBuffer(d.Data)
	r.format, r.sets, r.set, r.i, r.records = f, nil, 0, 0, nil
	switch f {
	case TelemetryNetFlow5:
		r.v5 = netflowlegacy.PacketNetFlowV5{}
		if err := netflowlegacy.DecodeMessageVersion(&r.buf, &r.v5); err != nil {
			return err
		}
		r.export = time.Unix(int64(r.v5.UnixSecs), int64(r.v5.UnixNSecs%1e9)).UTC()
		r.uptime = r.v5.SysUptime
		r.dom = e.domain(f, uint32(r.v5.EngineType)<<8|uint32(r.v5.EngineId))
		e.sequence(r.dom, r.v5.FlowSequence, uint32(len(r.v5.Records)))
		// The header's sampling interval: the mode in the top two bits,
		// the interval in the other fourteen.
		r.dom.rate = uint32(r.v5.SamplingInterval & 0x3fff)
		return nil
	case TelemetryNetFlow9:
		r.v9 = netflow.NFv9Packet{}
		e.tmpl.misses = 0
		err := netflow.DecodeMessageVersion(&r.buf, &e.tmpl, &r.v9, nil)
		r.sets = r.v9.FlowSets
		r.export = time.Unix(int64(r.v9.UnixSeconds), 0).UTC()
		r.uptime = r.v9.SystemUptime
		r.dom = e.domain(f, r.v9.SourceId)
		if err = r.setsErr(t, e, err); err != nil {
			return err
		}
		e.sequence(r.dom, r.v9.SequenceNumber, 1)
	case TelemetryIPFIX:
		r.ipfx = netflow.IPFIXPacket{}
		e.tmpl.misses = 0
		err := netflow.DecodeMessageVersion(&r.buf, &e.tmpl, nil, &r.ipfx)
		r.sets = r.ipfx.FlowSets
		r.export = time.Unix(int64(r.ipfx.ExportTime), 0).UTC()
		r.dom = e.domain(f, r.ipfx.ObservationDomainId)
		if err = r.setsErr(t, e, err); err != nil {
			return err
		}
		var n uint32
		for _, s := range r.sets {
			if ds, ok := s.(netflow.DataFlowSet); ok {
				n += uint32(len(ds.Records))
			}
		}
		e.sequence(r.dom, r.ipfx.SequenceNumber, n)
	}
	for _, s := range r.sets {
		if os, ok := s.(netflow.OptionsDataFlowSet); ok {
			for _, rec := range os.Records {
				rate, init := optionsOf(rec.OptionsValues)
				if rate > 0 {
					r.dom.rate = rate
				}
				if init > 0 {
					r.dom.init = init
				}
			}
		}
	}
	return nil
}

// setsErr sorts the decoder's error: data sets that came before their
// template are counted and the rest of the datagram is read; a template
// past the bound is counted and refused, as are the sets after it; any
// other error refuses the datagram.
func (r *netflowReader) setsErr(t *Telemetry, e *exporter, err error) error {
	if e.tmpl.misses > 0 {
		e.TemplateMisses += e.tmpl.misses
		t.stats.Dropped[TelemetryTemplateMissing] += e.tmpl.misses
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errTemplateLimit):
		t.stats.Dropped[TelemetryTemplateLimit]++
		return nil
	case errors.Is(err, netflow.ErrorTemplateNotFound) && !hasOtherErr(err):
		return nil
	}
	return err
}

// hasOtherErr reports whether err, the errors of a datagram's sets joined,
// holds one that is not a missing template.
func hasOtherErr(err error) bool {
	var errs []error
	for u := err; u != nil; {
		if j, ok := u.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
			break
		}
		u = errors.Unwrap(u)
	}
	for _, e := range errs {
		if !errors.Is(e, netflow.ErrorTemplateNotFound) {
			return true
		}
	}
	return false
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
			for r.i >= len(r.records) {
				if r.set >= len(r.sets) {
					return false
				}
				r.records, r.i = nil, 0
				if ds, ok := r.sets[r.set].(netflow.DataFlowSet); ok {
					r.records = ds.Records
				}
				r.set++
			}
			rec = r.fromFields(r.records[r.i].Values)
			r.i++
		}
		if r.deliver(t, &rec, f) {
			return true
		}
	}
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

// fromFields reads a v9 or IPFIX data record.
func (r *netflowReader) fromFields(vals []netflow.DataField) flowRecord {
	var rec flowRecord
	var startAbs, endAbs int64
	var haveStart, haveEnd bool
	var initMilli uint64
	var startUp, endUp uint64
	var haveStartUp, haveEndUp bool
	var interval, space uint64
	for i := range vals {
		v := &vals[i]
		b, _ := v.Value.([]byte)
		if v.PenProvided || b == nil {
			continue
		}
		n := beUint(b)
		switch v.Type {
		case ieSrc4, ieSrc6:
			if a, ok := netip.AddrFromSlice(b); ok {
				rec.src = a
			}
		case ieDst4, ieDst6:
			if a, ok := netip.AddrFromSlice(b); ok {
				rec.dst = a
			}
		case ieSrcPort:
			rec.sport = uint16(n)
		case ieDstPort:
			rec.dport = uint16(n)
		case ieProto:
			rec.proto = uint8(n)
		case ieTCPFlags:
			rec.tcpFlags = uint8(n)
		case ieIn:
			rec.in = uint32(n)
		case ieOut:
			rec.out = uint32(n)
		case iePackets, iePacketsTotal:
			rec.packets = n
		case ieOctets, ieOctetsTotal:
			rec.bytes = n
		case ieSampling, ieSamplerRandom:
			rec.rate, rec.hasRate = clampRate(n), true
		case iePacketInterval:
			interval = n
		case iePacketSpace:
			space = n
		case ieStartUptime:
			startUp, haveStartUp = n, true
		case ieEndUptime:
			endUp, haveEndUp = n, true
		case ieSystemInitMilli:
			initMilli = n
		case ieStartSec:
			startAbs, haveStart = int64(min(n, 1<<33))*1e9, true
		case ieEndSec:
			endAbs, haveEnd = int64(min(n, 1<<33))*1e9, true
		case ieStartMilli:
			startAbs, haveStart = int64(min(n, 1<<43))*1e6, true
		case ieEndMilli:
			endAbs, haveEnd = int64(min(n, 1<<43))*1e6, true
		case ieStartMicro, ieStartNano:
			startAbs, haveStart = ntpNanos(n), true
		case ieEndMicro, ieEndNano:
			endAbs, haveEnd = ntpNanos(n), true
		case ieDurationMilli:
			rec.duration, rec.hasDuration = time.Duration(min(n, 1<<40))*time.Millisecond, true
		case ieDurationMicro:
			rec.duration, rec.hasDuration = time.Duration(min(n, 1<<50))*time.Microsecond, true
		}
	}
	if interval > 0 && !rec.hasRate {
		// PSAMP's systematic count-based sampling: interval packets
		// taken in every interval+space.
		rec.rate, rec.hasRate = clampRate((interval+space)/interval), true
	}
	switch {
	case haveStart && haveEnd:
		rec.start, rec.end, rec.hasTimes = startAbs, endAbs, true
	case haveStartUp && haveEndUp && (initMilli > 0 || r.dom.init > 0):
		if initMilli == 0 {
			initMilli = r.dom.init
		}
		rec.start = int64(min(initMilli+startUp, 1<<43)) * 1e6
		rec.end = int64(min(initMilli+endUp, 1<<43)) * 1e6
		rec.hasTimes = true
	case haveStartUp && haveEndUp:
		rec.start, rec.end, rec.uptime, rec.hasTimes = int64(uint32(startUp)), int64(uint32(endUp)), true, true
	}
	return rec
}

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

// optionsOf returns what an options record says of the records that
// follow: the sampling rate (0: none said) and when the exporter booted,
// in Unix milliseconds (0: not said), which uptime times count from.
func optionsOf(vals []netflow.DataField) (rate uint32, initMilli uint64) {
	var interval, space uint64
	for _, v := range vals {
		b, _ := v.Value.([]byte)
		if v.PenProvided || b == nil {
			continue
		}
		switch v.Type {
		case ieSampling, ieSamplerRandom:
			rate = max(clampRate(beUint(b)), 1)
		case iePacketInterval:
			interval = beUint(b)
		case iePacketSpace:
			space = beUint(b)
		case ieSystemInitMilli:
			initMilli = min(beUint(b), 1<<43)
		}
	}
	if interval > 0 && rate == 0 {
		rate = max(clampRate((interval+space)/interval), 1)
	}
	return rate, initMilli
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
// decoder stores and looks them up, bounded: a template past max is
// refused. It counts the look-ups that found none.
type templates struct {
	m      map[uint64]any
	max    int
	misses uint64
}

var _ netflow.NetFlowTemplateSystem = (*templates)(nil)

func templateKey(version uint16, domain uint32, id uint16) uint64 {
	return uint64(version)<<48 | uint64(domain)<<16 | uint64(id)
}

func (s *templates) AddTemplate(version uint16, domain uint32, id uint16, tmpl any) error {
	k := templateKey(version, domain, id)
	if _, ok := s.m[k]; !ok && len(s.m) >= s.max {
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
