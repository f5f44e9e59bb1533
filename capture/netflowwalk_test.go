package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// FuzzNetFlowWalk holds nfMessage to goflow2's NetFlow v9 and IPFIX
// decoder: on any message (that netflowFits passes), both refuse it or
// both read it, and then to the same records, record for record, the same
// options (sampling rate, boot time), the same count of data records and
// the same template misses. Seeded with softflowd's messages.
func FuzzNetFlowWalk(f *testing.F) {
	for _, name := range []string{"softflowd-ipfix.pcap", "softflowd-v9.pcap"} {
		for _, d := range loadDatagrams(f, name)[:20] {
			f.Add(d.Data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		version := binary.BigEndian.Uint16(data)
		format := TelemetryNetFlow9
		if version == 10 {
			format = TelemetryIPFIX
		} else if version != 9 {
			return
		}
		if !netflowFits(data, format) {
			return
		}
		// goflow2, with its own template store.
		var ge exporter
		ge.tmpl.max = 16
		var v9 netflow.NFv9Packet
		var ipfx netflow.IPFIXPacket
		gerr := netflow.DecodeMessageVersion(bytes.NewBuffer(data), &ge.tmpl, &v9, &ipfx)
		sets, domainID := v9.FlowSets, v9.SourceId
		if version == 10 {
			sets, domainID = ipfx.FlowSets, ipfx.ObservationDomainId
		}
		if gerr != nil && errors.Is(gerr, netflow.ErrorTemplateNotFound) && !hasOtherErr(gerr) {
			gerr = nil
		}
		var gdom domain
		var want []flowRecord
		var records uint32
		for _, s := range sets {
			switch ds := s.(type) {
			case netflow.DataFlowSet:
				records += uint32(len(ds.Records))
				for _, rec := range ds.Records {
					rb := builderOf(rec.Values)
					want = append(want, rb.record(0))
				}
			case netflow.OptionsDataFlowSet:
				records += uint32(len(ds.Records))
				for _, rec := range ds.Records {
					rb := builderOf(rec.OptionsValues)
					rate, init := rb.options()
					if rate > 0 {
						gdom.rate = rate
					}
					if init > 0 {
						gdom.init = init
					}
				}
			}
		}

		// The walk, with a store of its own.
		var we exporter
		we.tmpl.max = 16
		var wdom domain
		var m nfMessage
		var body []byte
		maxSets := -1
		if version == 9 {
			body, maxSets, domainID = data[20:], int(binary.BigEndian.Uint16(data[2:])), binary.BigEndian.Uint32(data[16:])
		} else {
			body = data[16:binary.BigEndian.Uint16(data[2:])]
		}
		werr := m.walk(&we, &wdom, body, version, domainID, maxSets)
		if (gerr == nil) != (werr == nil) && !(errors.Is(gerr, errTemplateLimit) && errors.Is(werr, errTemplateLimit)) {
			t.Fatalf("goflow2: %v; the walk: %v", gerr, werr)
		}
		if gerr != nil {
			return
		}
		var got []flowRecord
		for {
			var rb recordBuilder
			if !m.next(&rb) {
				break
			}
			got = append(got, rb.record(0))
		}
		if len(got) != len(want) {
			t.Fatalf("the walk reads %d records, goflow2 %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("record %d: the walk reads %+v, goflow2 %+v", i, got[i], want[i])
			}
		}
		if m.records+m.optionRecords != records || wdom != gdom || we.tmpl.misses != ge.tmpl.misses || len(we.tmpl.m) != len(ge.tmpl.m) {
			t.Fatalf("the walk: %d records, options %+v, %d misses, %d templates; goflow2: %d, %+v, %d, %d",
				m.records, wdom, we.tmpl.misses, len(we.tmpl.m), records, gdom, ge.tmpl.misses, len(ge.tmpl.m))
		}
	})
}

// hasOtherErr reports whether err, the errors of a message's sets that
// goflow2 joined, holds one that is not a missing template.
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

// builderOf gathers the values goflow2 decoded of a record's fields, as
// walkRecord hands them over: enterprise fields passed over.
func builderOf(vals []netflow.DataField) recordBuilder {
	var rb recordBuilder
	for _, v := range vals {
		if b, ok := v.Value.([]byte); ok && !v.PenProvided {
			rb.field(v.Type, b)
		}
	}
	return rb
}
