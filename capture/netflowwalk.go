package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// nfMessage reads the sets of a NetFlow v9 or IPFIX message in place.
// Template and options template sets go to goflow2's decoder, which
// parses them into the exporter's template store; they are rare (a router
// sends its templates every few minutes). Data sets, where the records
// are, are read here, allocating nothing: goflow2 makes a slice of
// fields and boxes every value of every record, some twenty allocations
// a record, which at a million records a second is where a collector's
// time would go. The reading mirrors goflow2's DecodeDataSet (a record
// wherever the set still holds the template's fixed length; a variable
// length field's one- or three-byte length; a value cut short where the
// set ends), and a differential test (FuzzNetFlowWalk) holds it to it.
type nfMessage struct {
	// The data sets of templates known, in order, each with the records
	// not read yet; set is the one being read. The slice is kept from
	// message to message.
	dsets []pendingSet
	set   int
	// records and options count the message's data records and options
	// data records: what IPFIX's sequence numbers count (RFC 7011 counts
	// both; softflowd only the first).
	records, optionRecords uint32
	// missing says a data set's template was not known (or was
	// refused): its records were not counted.
	missing bool
}

// pendingSet is a data set whose records wait to be read.
type pendingSet struct {
	b      []byte
	fields []netflow.Field
	size   int // a record's fixed length
}

// The errors of a walk; either refuses the datagram, as goflow2's
// decoder would.
var (
	errSetID       = errors.New("netflow: reserved set id")
	errFieldLength = errors.New("netflow: variable-length field cut short")
)

// walk reads the sets of a message's body (after its header): at most
// maxSets of them (NetFlow v9's count; -1: all, IPFIX). Templates are
// stored in e's store, options records set dom's sampling rate and boot
// time, data sets are kept to be read by next. The body must have passed
// setsFit. An error refuses the datagram; errTemplateLimit refuses the
// sets from the template that met the bound on, as goflow2 stops there.
func (m *nfMessage) walk(e *exporter, dom *domain, body []byte, version uint16, domainID uint32, maxSets int) error {
	m.dsets, m.set, m.records, m.optionRecords, m.missing = m.dsets[:0], 0, 0, 0, false
	var rb recordBuilder
	for i := 0; (maxSets < 0 || i < maxSets) && len(body) >= 4; i++ {
		id, n := binary.BigEndian.Uint16(body), int(binary.BigEndian.Uint16(body[2:]))
		set := body[:n]
		body = body[n:]
		switch {
		case version == 9 && id <= 1, version == 10 && (id == 2 || id == 3):
			if _, err := netflow.DecodeMessageCommonFlowSet(bytes.NewBuffer(set), &e.tmpl, domainID, version); err != nil {
				return err
			}
		case id >= 256:
			tmpl, err := e.tmpl.GetTemplate(version, domainID, id)
			if err != nil {
				m.missing = true // GetTemplate counted the miss
				continue
			}
			recs := set[4:]
			switch t := tmpl.(type) {
			case netflow.TemplateRecord:
				size := netflow.GetTemplateSize(version, t.Fields)
				n, err := countRecords(recs, t.Fields, size)
				if err != nil {
					return err
				}
				m.records += n
				m.dsets = append(m.dsets, pendingSet{b: recs, fields: t.Fields, size: size})
			case netflow.NFv9OptionsTemplateRecord:
				if err := m.options(dom, recs, version, t.Scopes, t.Options, &rb); err != nil {
					return err
				}
			case netflow.IPFIXOptionsTemplateRecord:
				if err := m.options(dom, recs, version, t.Scopes, t.Options, &rb); err != nil {
					return err
				}
			}
		default:
			return errSetID
		}
	}
	return nil
}

// countRecords counts the records of a data set, reading them where
// their length varies: a field cut short is an error.
func countRecords(b []byte, fields []netflow.Field, size int) (uint32, error) {
	variable := false
	for i := range fields {
		variable = variable || fields[i].Length == 0xffff
	}
	if !variable {
		return uint32(len(b) / size), nil
	}
	var n uint32
	for len(b) >= size {
		var err error
		if b, err = walkRecord(b, fields, nil); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// options reads an options data set: the sampling rate and the boot time
// its records say hold for the records that follow.
func (m *nfMessage) options(dom *domain, b []byte, version uint16, scopes, opts []netflow.Field, rb *recordBuilder) error {
	size := netflow.GetTemplateSize(version, scopes) + netflow.GetTemplateSize(version, opts)
	for len(b) >= size {
		var err error
		if b, err = walkRecord(b, scopes, nil); err != nil {
			return err
		}
		*rb = recordBuilder{}
		if b, err = walkRecord(b, opts, rb); err != nil {
			return err
		}
		m.optionRecords++
		rate, init := rb.options()
		if rate > 0 {
			dom.rate = rate
		}
		if init > 0 {
			dom.init = init
		}
	}
	return nil
}

// next reads the next data record into rb; false at the end.
func (m *nfMessage) next(rb *recordBuilder) bool {
	for m.set < len(m.dsets) {
		ds := &m.dsets[m.set]
		if len(ds.b) >= ds.size {
			*rb = recordBuilder{}
			ds.b, _ = walkRecord(ds.b, ds.fields, rb) // walk counted it whole
			return true
		}
		m.set++
	}
	return false
}

// walkRecord reads one record of the given fields from b, handing each
// value to rb (nil: passed over), and returns the rest of b.
func walkRecord(b []byte, fields []netflow.Field, rb *recordBuilder) ([]byte, error) {
	for i := range fields {
		f := &fields[i]
		n := int(f.Length)
		if f.Length == 0xffff {
			// RFC 7011 section 7: a byte of length, or 255 and two.
			if len(b) < 1 {
				return b, errFieldLength
			}
			n, b = int(b[0]), b[1:]
			if n == 0xff {
				if len(b) < 2 {
					return b, errFieldLength
				}
				n, b = int(binary.BigEndian.Uint16(b)), b[2:]
			}
		}
		n = min(n, len(b))
		if rb != nil && !f.PenProvided {
			rb.field(f.Type, b[:n:n])
		}
		b = b[n:]
	}
	return b, nil
}

// recordBuilder gathers what a data or options record's fields say.
type recordBuilder struct {
	rec                    flowRecord
	startAbs, endAbs       int64
	haveStart, haveEnd     bool
	initMilli              uint64
	startUp, endUp         uint64
	haveStartUp, haveEndUp bool
	interval, space        uint64
}

// field notes the value b of the information element typ.
func (r *recordBuilder) field(typ uint16, b []byte) {
	rec := &r.rec
	n := beUint(b)
	switch typ {
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
		r.interval = n
	case iePacketSpace:
		r.space = n
	case ieStartUptime:
		r.startUp, r.haveStartUp = n, true
	case ieEndUptime:
		r.endUp, r.haveEndUp = n, true
	case ieSystemInitMilli:
		r.initMilli = n
	case ieStartSec:
		r.startAbs, r.haveStart = int64(min(n, 1<<33))*1e9, true
	case ieEndSec:
		r.endAbs, r.haveEnd = int64(min(n, 1<<33))*1e9, true
	case ieStartMilli:
		r.startAbs, r.haveStart = int64(min(n, 1<<43))*1e6, true
	case ieEndMilli:
		r.endAbs, r.haveEnd = int64(min(n, 1<<43))*1e6, true
	case ieStartMicro, ieStartNano:
		r.startAbs, r.haveStart = ntpNanos(n), true
	case ieEndMicro, ieEndNano:
		r.endAbs, r.haveEnd = ntpNanos(n), true
	case ieDurationMilli:
		rec.duration, rec.hasDuration = time.Duration(min(n, 1<<40))*time.Millisecond, true
	case ieDurationMicro:
		rec.duration, rec.hasDuration = time.Duration(min(n, 1<<50))*time.Microsecond, true
	}
}

// record returns the data record; domInit is the boot time its exporter's
// options said, in Unix milliseconds (0: none), which uptime times count
// from when the record does not say it.
func (r *recordBuilder) record(domInit uint64) flowRecord {
	rec := r.rec
	if r.interval > 0 && !rec.hasRate {
		// PSAMP's systematic count-based sampling: interval packets
		// taken in every interval+space.
		rec.rate, rec.hasRate = clampRate((r.interval+r.space)/r.interval), true
	}
	initMilli := r.initMilli
	switch {
	case r.haveStart && r.haveEnd:
		rec.start, rec.end, rec.hasTimes = r.startAbs, r.endAbs, true
	case r.haveStartUp && r.haveEndUp && (initMilli > 0 || domInit > 0):
		if initMilli == 0 {
			initMilli = domInit
		}
		rec.start = int64(min(initMilli+r.startUp, 1<<43)) * 1e6
		rec.end = int64(min(initMilli+r.endUp, 1<<43)) * 1e6
		rec.hasTimes = true
	case r.haveStartUp && r.haveEndUp:
		rec.start, rec.end, rec.uptime, rec.hasTimes = int64(uint32(r.startUp)), int64(uint32(r.endUp)), true, true
	}
	return rec
}

// options returns what an options record says of the records that
// follow: the sampling rate (0: none said) and when the exporter booted,
// in Unix milliseconds (0: not said).
func (r *recordBuilder) options() (rate uint32, initMilli uint64) {
	if r.rec.hasRate {
		rate = max(r.rec.rate, 1)
	} else if r.interval > 0 {
		rate = max(clampRate((r.interval+r.space)/r.interval), 1)
	}
	return rate, min(r.initMilli, 1<<43)
}
