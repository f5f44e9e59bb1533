package capture

import (
	"bytes"

	"github.com/gopacket/gopacket/layers"
	"github.com/netsampler/goflow2/v2/decoders/sflow"
)

// sflowReader delivers the flow samples of an sFlow v5 datagram, which
// goflow2's decoder reads: each sample's raw packet header record is a
// frame that stands for sampling_rate packets of the sampled frame's
// length. Counter samples say nothing about packets and are passed over;
// so are drop samples (packets the router discarded, which reached no
// victim).
type sflowReader struct {
	pkt sflow.Packet
	buf bytes.Buffer
	i   int // the next sample of pkt
}

// decode reads the datagram d from exporter e and checks its sequence.
func (r *sflowReader) decode(t *Telemetry, e *exporter, d *Datagram) error {
	r.buf = *bytes.NewBuffer(d.Data)
	r.pkt, r.i = sflow.Packet{}, 0
	if err := sflow.DecodeMessageVersion(&r.buf, &r.pkt); err != nil {
		return err
	}
	dom := e.domain(TelemetrySFlow, r.pkt.SubAgentId)
	e.sequence(dom, r.pkt.SequenceNumber, 1)
	return nil
}

// next fills f with the next flow sample that counts.
func (r *sflowReader) next(t *Telemetry, f *Frame) bool {
	e := t.cur
	for r.i < len(r.pkt.Samples) {
		s := r.pkt.Samples[r.i]
		r.i++
		var rate, in, out uint32
		var recs []sflow.FlowRecord
		switch s := s.(type) {
		case sflow.FlowSample:
			rate, recs = s.SamplingRate, s.Records
			in, out = ifIndex(s.Input), ifIndex(s.Output)
		case sflow.ExpandedFlowSample:
			rate, recs = s.SamplingRate, s.Records
			if s.InputIfFormat == 0 {
				in = s.InputIfValue
			}
			if s.OutputIfFormat == 0 {
				out = s.OutputIfValue
			}
		default:
			continue
		}
		h, ok := sampledHeader(recs)
		if !ok {
			t.stats.Dropped[TelemetryNotIP]++
			continue
		}
		var lt layers.LinkType
		switch h.Protocol {
		case 1: // ETHERNET-ISO88023
			lt = layers.LinkTypeEthernet
		case 11:
			lt = layers.LinkTypeIPv4
		case 12:
			lt = layers.LinkTypeIPv6
		default:
			t.stats.Dropped[TelemetryNotIP]++
			continue
		}
		if rate == 0 {
			// RFC 3176's sampling_rate is at least 1: 0 is not a rate.
			t.stats.Dropped[TelemetrySamplingInvalid]++
			continue
		}
		if !t.counts(e, in) {
			continue
		}
		rate, ok = t.rate(e, rate)
		if !ok {
			continue
		}
		// The frame's length as it was on the wire, less what the agent
		// stripped (the FCS), and never less than what it kept.
		n := len(h.HeaderData)
		if l := int64(h.FrameLength) - int64(h.Stripped); l > int64(n) {
			n = int(min(l, 1<<20))
		}
		*f = Frame{Data: h.HeaderData, CaptureLength: len(h.HeaderData), Length: n, LinkType: lt}
		f.Sample = Sampled{Format: TelemetrySFlow, InIf: in, OutIf: out, Rate: rate,
			Packets: uint64(rate), Bytes: uint64(rate) * uint64(n)}
		e.Samples++
		t.stats.Samples++
		return true
	}
	return false
}

// sampledHeader returns the raw packet header record among a sample's
// records.
func sampledHeader(recs []sflow.FlowRecord) (sflow.SampledHeader, bool) {
	for _, rec := range recs {
		if h, ok := rec.Data.(sflow.SampledHeader); ok {
			return h, true
		}
	}
	return sflow.SampledHeader{}, false
}

// ifIndex reads a compact flow sample's input or output field: an
// ifIndex when its top two bits (the format) are 0; otherwise a count of
// interfaces or a reason for a discard, which name no interface.
func ifIndex(v uint32) uint32 {
	if v>>30 != 0 {
		return 0
	}
	return v
}
