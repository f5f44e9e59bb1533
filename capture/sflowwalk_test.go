package capture

import (
	"bytes"
	"testing"

	"github.com/netsampler/goflow2/v2/decoders/sflow"
)

// FuzzSFlowWalk holds sflowWalk to goflow2's sflow decoder: wherever
// goflow2 accepts a datagram (that sflowFits passes), the walk accepts it
// and reads the same flow samples, in order, with the same sampling rate,
// interfaces and raw packet header record. Seeded with pmacct's datagrams.
func FuzzSFlowWalk(f *testing.F) {
	for _, d := range loadDatagrams(f, "pmacct-sflow.pcap")[:20] {
		f.Add(d.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !sflowFits(data) {
			return
		}
		var w sflowWalk
		werr := w.start(data)
		var pkt sflow.Packet
		if err := sflow.DecodeMessageVersion(bytes.NewBuffer(data), &pkt); err != nil {
			// goflow2 refuses it (a record the walk never reads is
			// damaged): the walk may read it or not; past sflowFits and
			// its header it meets no error, and must not panic.
			for werr == nil {
				var s sflowFlow
				ok, err := w.next(&s)
				if err != nil {
					t.Fatalf("the walk meets %v past sflowFits", err)
				}
				if !ok {
					break
				}
			}
			return
		}
		if werr != nil {
			t.Fatalf("goflow2 reads the datagram, the walk refuses it: %v", werr)
		}
		if w.subAgent != pkt.SubAgentId || w.seq != pkt.SequenceNumber {
			t.Fatalf("sub-agent %d seq %d, goflow2 %d %d", w.subAgent, w.seq, pkt.SubAgentId, pkt.SequenceNumber)
		}
		for i, smp := range pkt.Samples {
			var want sflowFlow
			var recs []sflow.FlowRecord
			switch s := smp.(type) {
			case sflow.FlowSample:
				want.rate, want.in, want.out, recs = s.SamplingRate, ifIndex(s.Input), ifIndex(s.Output), s.Records
			case sflow.ExpandedFlowSample:
				want.rate, recs = s.SamplingRate, s.Records
				if s.InputIfFormat == 0 {
					want.in = s.InputIfValue
				}
				if s.OutputIfFormat == 0 {
					want.out = s.OutputIfValue
				}
			default:
				continue
			}
			if h, ok := sampledHeader(recs); ok {
				want.hasHeader, want.protocol, want.frameLength, want.stripped, want.headerLength, want.header =
					true, h.Protocol, h.FrameLength, h.Stripped, h.OriginalLength, h.HeaderData
			}
			var got sflowFlow
			ok, err := w.next(&got)
			if !ok || err != nil {
				t.Fatalf("sample %d: the walk ends (%v); goflow2 reads %+v", i, err, want)
			}
			if got.rate != want.rate || got.in != want.in || got.out != want.out || got.hasHeader != want.hasHeader ||
				got.protocol != want.protocol || got.frameLength != want.frameLength || got.stripped != want.stripped || got.headerLength != want.headerLength ||
				!bytes.Equal(got.header, want.header) {
				t.Fatalf("sample %d: the walk reads %+v, goflow2 %+v", i, got, want)
			}
		}
		var s sflowFlow
		if ok, err := w.next(&s); ok || err != nil {
			t.Fatalf("the walk reads a sample more (%+v, %v) than goflow2", s, err)
		}
	})
}

// sampledHeader returns the first raw packet header record among a
// sample's records, as goflow2 decodes them.
func sampledHeader(recs []sflow.FlowRecord) (sflow.SampledHeader, bool) {
	for _, rec := range recs {
		if h, ok := rec.Data.(sflow.SampledHeader); ok {
			return h, true
		}
	}
	return sflow.SampledHeader{}, false
}
