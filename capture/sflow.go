package capture

import (
	"encoding/binary"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// sflowReader delivers the flow samples of an sFlow v5 datagram, read in
// place by sflowWalk (held to goflow2's decoder by FuzzSFlowWalk): each
// sample's raw packet header record is a frame that stands for
// sampling_rate packets of the sampled frame's length. Counter samples say
// nothing about packets and are passed over; so are drop samples (packets
// the router discarded, which reached no victim).
type sflowReader struct {
	w    sflowWalk
	span time.Duration // what each sample of the datagram stands for in time
}

// sFlow agents keep their samples and send them together, when a datagram
// is full or once a second or so (pmacct's sfprobe sends a second's at
// once, and now and then two seconds' when one was late): counted at
// their arrival, the samples of a second would make a burst that no rate
// over whole seconds reads right. Each sample so stands for the time since
// the sub-agent's flush before (Sampled.Span), and detection spreads it
// over that time. A flush is the datagrams that come within sflowFlush of
// its first; a sample stands for at most sflowMaxSpan, and the first
// flush of a sub-agent, which has nothing before it, for none.
const (
	sflowFlush   = 100 * time.Millisecond
	sflowMaxSpan = 2 * time.Second
)

// decode reads the datagram d from exporter e and checks its sequence.
func (r *sflowReader) decode(t *Telemetry, e *exporter, d *Datagram) error {
	if !sflowFits(d.Data) {
		return errCut
	}
	if err := r.w.start(d.Data); err != nil {
		return err
	}
	dom := e.domain(TelemetrySFlow, r.w.subAgent)
	e.sequence(dom, r.w.seq, 1, 1)
	r.span = dom.flushed(d.Timestamp.UnixNano())
	return nil
}

// flushed notes an sFlow datagram of the sub-agent that arrived at (Unix
// ns) and returns the time its samples stand for: the gap since the
// sub-agent's datagram before, for the first datagram of a flush, and the
// same as that first one's for the others of the flush. A flush of under a
// quarter of the datagrams of the flush before it is taken for a partial
// one, whose agent sent the rest late (pmacct's sfprobe does, now and then,
// and sends two seconds' in its next flush): the flush after it stands for
// the time since the flush before the partial one.
func (d *domain) flushed(at int64) time.Duration {
	switch {
	case d.last == 0 || at < d.last: // the first, or time went back
		d.span, d.prevLast, d.prevN = 0, 0, 0
		d.flush, d.n = at, 1
	case at-d.flush > int64(sflowFlush):
		from := d.last
		if d.prevN > 0 && d.n*4 <= d.prevN {
			from = d.prevLast
		}
		d.span = min(time.Duration(at-from), sflowMaxSpan)
		d.prevLast, d.prevN = d.last, d.n
		d.flush, d.n = at, 1
	default:
		d.n++
	}
	d.last = at
	return d.span
}

// next fills f with the next flow sample that counts.
func (r *sflowReader) next(t *Telemetry, f *Frame) bool {
	e := t.cur
	var s sflowFlow
	for {
		if ok, _ := r.w.next(&s); !ok { // sflowFits leaves it no error to meet
			return false
		}
		if !s.hasHeader {
			t.stats.Dropped[TelemetryNotIP]++
			continue
		}
		var lt layers.LinkType
		switch s.protocol {
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
		if s.rate == 0 {
			// RFC 3176's sampling_rate is at least 1: 0 is not a rate.
			t.stats.Dropped[TelemetrySamplingInvalid]++
			continue
		}
		in, out := knownIf(s.in), knownIf(s.out)
		if !t.counts(e, in) {
			continue
		}
		rate, ok := t.rate(e, s.rate)
		if !ok {
			continue
		}
		// The record's bytes run to its end, with the padding to four
		// bytes of XDR's opaque header<>; its length field says how many
		// are the header.
		h := s.header
		if uint64(s.headerLength) < uint64(len(h)) {
			h = h[:s.headerLength]
		}
		// The frame's length as it was on the wire, less what the agent
		// stripped (the FCS), and never less than what it kept.
		n := len(h)
		if l := int64(s.frameLength) - int64(s.stripped); l > int64(n) {
			n = int(min(l, 1<<20))
		}
		*f = Frame{Data: h, CaptureLength: len(h), Length: n, LinkType: lt}
		f.Sample = Sampled{Format: TelemetrySFlow, InIf: in, OutIf: out, Rate: rate,
			Packets: uint64(rate), Bytes: uint64(rate) * uint64(n), Span: r.span}
		e.Samples++
		t.stats.Samples++
		return true
	}
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

// knownIf returns an sFlow interface index, or 0 for 0x3FFFFFFF, which
// says the interface is not known (sFlow v5, section 5: "the value
// 0x3FFFFFFF... if the interface is not known"): not an interface a
// filter or an alert should name.
func knownIf(v uint32) uint32 {
	if v == 0x3FFFFFFF {
		return 0
	}
	return v
}

// sflowHeaderLen returns the length of an sFlow datagram's header:
// version, agent address type, agent address (IPv4 or IPv6), sub-agent
// id, sequence number, uptime and the count of samples.
func sflowHeaderLen(b []byte) (int, error) {
	if len(b) < 8 {
		return 0, errCut
	}
	switch binary.BigEndian.Uint32(b[4:]) {
	case 1:
		return 8 + 4 + 16, nil
	case 2:
		return 8 + 16 + 16, nil
	}
	return 0, errSFlowAddress
}

// sflowFits reports whether an sFlow v5 datagram holds the samples and the
// records its headers count, each of a format goflow2 reads, within the
// bounds goflow2 sets (so that sflowWalk, once it has read the header, can
// read it through without an error). goflow2's decoder stops quietly at a sample
// or record cut short, which would count a truncated datagram as whole;
// and it makes an expanded flow sample's records before it reads them, as
// many as the sample's 32-bit count says (the other formats' counts it
// bounds at 1000): a datagram of 236 bytes could ask for gigabytes.
func sflowFits(b []byte) bool {
	be := binary.BigEndian
	n, err := sflowHeaderLen(b)
	if err != nil || len(b) < n {
		return false
	}
	samples := be.Uint32(b[n-4:])
	if samples > 1000 { // goflow2's bound
		return false
	}
	b = b[n:]
	for range samples {
		if len(b) < 8 {
			return false
		}
		format, size := be.Uint32(b), be.Uint32(b[4:])
		b = b[8:]
		if uint64(size) > uint64(len(b)) {
			return false
		}
		s := b[:size]
		b = b[size:]
		// The words of the sample before its record count.
		var words int
		switch format {
		case 1, 5: // flow sample; drop sample
			words = 7
		case 2: // counter sample
			words = 2
		case 3: // expanded flow sample
			words = 10
		case 4: // expanded counter sample
			words = 3
		default:
			return false // goflow2 refuses it
		}
		if len(s) < 4*words+4 {
			return false
		}
		recs := be.Uint32(s[4*words:])
		s = s[4*words+4:]
		if uint64(recs) > uint64(len(s)/8) || format != 3 && recs > maxSFlowCount {
			return false
		}
		for range recs {
			if len(s) < 8 {
				return false
			}
			rf, l := be.Uint32(s), be.Uint32(s[4:])
			s = s[8:]
			if uint64(l) > uint64(len(s)) {
				return false
			}
			// A flow sample's raw packet header record holds its four
			// words before the header.
			if (format == 1 || format == 3) && rf == 1 && l < 16 {
				return false
			}
			s = s[l:]
		}
	}
	return true
}
