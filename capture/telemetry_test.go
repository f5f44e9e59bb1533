package capture

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// The builders below write telemetry datagrams field by field, each field
// named where it is written: sFlow v5 (sflow.org/sflow_version_5.txt),
// NetFlow v5 (Cisco's export format), NetFlow v9 (RFC 3954) and IPFIX
// (RFC 7011).

// wire appends big-endian fields.
type wire []byte

func (w wire) u8(v uint8) wire   { return append(w, v) }
func (w wire) u16(v uint16) wire { return binary.BigEndian.AppendUint16(w, v) }
func (w wire) u32(v uint32) wire { return binary.BigEndian.AppendUint32(w, v) }
func (w wire) u64(v uint64) wire { return binary.BigEndian.AppendUint64(w, v) }

// uint writes v in n bytes, as a template field of length n holds it.
func (w wire) uint(v uint64, n int) wire {
	for i := n - 1; i >= 0; i-- {
		if i >= 8 {
			w = append(w, 0)
			continue
		}
		w = append(w, byte(v>>(8*i)))
	}
	return w
}

// pad4 pads to a multiple of four bytes, as sFlow's opaque data is.
func (w wire) pad4() wire {
	for len(w)%4 != 0 {
		w = append(w, 0)
	}
	return w
}

var (
	tExporter  = netip.MustParseAddr("192.0.2.1")
	tExporter2 = netip.MustParseAddr("192.0.2.2")
	tAgent     = netip.MustParseAddr("192.0.2.99") // what the sFlow datagram says its agent is
	tSrc       = netip.MustParseAddr("198.51.100.7")
	tDst       = netip.MustParseAddr("203.0.113.9")
	tSrc6      = netip.MustParseAddr("2001:db8::7")
	tDst6      = netip.MustParseAddr("2001:db8::9")
	// tArrive is when the first datagram arrives; tExport the export
	// time the exporters' clocks write, two minutes behind: only the
	// exporter's differences may count.
	tArrive = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	tExport = tArrive.Add(-2 * time.Minute)
)

// udpFrame returns an Ethernet/IPv4/UDP frame from src to dst with
// payload bytes of payload, and its length on the wire with the FCS.
func udpFrame(src, dst netip.AddrPort, payload int) (frame []byte, wireLen uint32) {
	ipLen := 20 + 8 + payload
	s, d := src.Addr().As4(), dst.Addr().As4()
	w := wire{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2} // destination MAC, source MAC
	w = w.u16(0x0800)                                   // EtherType IPv4
	w = w.u8(0x45).u8(0).u16(uint16(ipLen))             // version 4, IHL 5; TOS; total length
	w = w.u16(0x1234).u16(0)                            // identification; flags, fragment offset
	w = w.u8(61).u8(ProtoUDP).u16(0)                    // TTL; protocol; checksum (unchecked)
	w = append(append(w, s[:]...), d[:]...)             // source, destination
	w = w.u16(src.Port()).u16(dst.Port())               // UDP ports
	w = w.u16(uint16(8 + payload)).u16(0)               // UDP length; checksum
	w = append(w, make([]byte, payload)...)
	return w, uint32(len(w) + 4)
}

// sflowSample is one sample of an sFlow v5 datagram.
type sflowSample struct {
	format  uint32 // 1 flow sample, 3 expanded flow sample, 2 counter sample
	rate    uint32
	in, out uint32 // compact ifIndexes, or the expanded sample's values (format 0)
	// header is the raw packet header record's bytes, of headerProto (1:
	// Ethernet); nil: the sample has an extended switch record only.
	header      []byte
	headerProto uint32
	frameLen    uint32 // the sampled frame's length on the wire, FCS included
	records     uint32 // the record count written; 0: as many as there are
}

// sflowDatagram returns an sFlow v5 datagram of the samples, from the
// agent tAgent, sub-agent 0.
func sflowDatagram(seq uint32, samples ...sflowSample) []byte {
	a := tAgent.As4()
	w := wire{}.u32(5)              // version
	w = w.u32(1)                    // agent address type: IPv4
	w = append(w, a[:]...)          // agent address
	w = w.u32(0)                    // sub-agent id
	w = w.u32(seq)                  // datagram sequence number
	w = w.u32(3_600_000)            // uptime, ms
	w = w.u32(uint32(len(samples))) // samples
	for i, s := range samples {
		var recs wire
		n := uint32(0)
		if s.header != nil {
			r := wire{}.u32(s.headerProto)   // header protocol
			r = r.u32(s.frameLen)            // frame length
			r = r.u32(4)                     // stripped: the FCS
			r = r.u32(uint32(len(s.header))) // header length
			r = append(r, s.header...).pad4()
			recs = recs.u32(1).u32(uint32(len(r))) // record: raw packet header
			recs = append(recs, r...)
			n++
		}
		recs = recs.u32(1001).u32(16)             // record: extended switch
		recs = recs.u32(10).u32(0).u32(20).u32(0) // source VLAN, priority; destination VLAN, priority
		n++
		if s.records != 0 {
			n = s.records
		}
		var b wire
		switch s.format {
		case 1:
			b = b.u32(uint32(i))       // sample sequence number
			b = b.u32(0<<24 | s.in)    // source id: ifIndex
			b = b.u32(s.rate)          // sampling rate
			b = b.u32(s.rate * 10)     // sample pool
			b = b.u32(0)               // drops
			b = b.u32(s.in).u32(s.out) // input, output
			b = b.u32(n)               // flow records
			b = append(b, recs...)
		case 3:
			b = b.u32(uint32(i))    // sample sequence number
			b = b.u32(0).u32(s.in)  // source id type, index
			b = b.u32(s.rate)       // sampling rate
			b = b.u32(s.rate * 10)  // sample pool
			b = b.u32(0)            // drops
			b = b.u32(0).u32(s.in)  // input: format 0 (ifIndex), value
			b = b.u32(0).u32(s.out) // output: format 0, value
			b = b.u32(n)            // flow records
			b = append(b, recs...)
		case 2:
			b = b.u32(uint32(i)).u32(s.in) // sample sequence number; source id
			b = b.u32(1)                   // counter records
			b = b.u32(1000).u32(4).u32(7)  // record: an unknown counter format, 4 bytes
		}
		w = w.u32(s.format).u32(uint32(len(b))) // sample format; length
		w = append(w, b...)
	}
	return w
}

// An Ethernet/IPv4/UDP frame sampled: 106 bytes on the wire less the FCS,
// a DNS response of 64 bytes.
var (
	tFrame, tFrameLen = udpFrame(netip.AddrPortFrom(tSrc, 53), netip.AddrPortFrom(tDst, 40000), 64)
	tFrameWire        = int(tFrameLen) - 4
)

// flow is what the NetFlow and IPFIX builders write into a record.
type flow struct {
	src, dst       netip.Addr
	sport, dport   uint16
	proto, flags   uint8
	in, out        uint32
	packets, bytes uint64
	// start and end: milliseconds of uptime (NetFlow v5, IEs 22, 21), or
	// Unix milliseconds (IEs 152, 153).
	start, end uint64
	sampling   uint64 // IE 34, where the template has it
}

// netflow5 returns a NetFlow v5 datagram of the flows; sampling is the
// header's field (mode in the top two bits).
func netflow5(seq, uptime uint32, sampling uint16, flows ...flow) []byte {
	w := wire{}.u16(5).u16(uint16(len(flows))) // version; count
	w = w.u32(uptime)                          // SysUptime, ms
	w = w.u32(uint32(tExport.Unix())).u32(0)   // unix_secs; unix_nsecs
	w = w.u32(seq)                             // flow_sequence
	w = w.u8(1).u8(2)                          // engine type, id
	w = w.u16(sampling)                        // sampling_interval
	for _, f := range flows {
		s, d := f.src.As4(), f.dst.As4()
		w = append(append(w, s[:]...), d[:]...)    // srcaddr, dstaddr
		w = w.u32(0)                               // nexthop
		w = w.u16(uint16(f.in)).u16(uint16(f.out)) // input, output
		w = w.u32(uint32(f.packets))               // dPkts
		w = w.u32(uint32(f.bytes))                 // dOctets
		w = w.u32(uint32(f.start))                 // First
		w = w.u32(uint32(f.end))                   // Last
		w = w.u16(f.sport).u16(f.dport)            // srcport, dstport
		w = w.u8(0).u8(f.flags).u8(f.proto)        // pad1, tcp_flags, prot
		w = w.u8(0).u16(0).u16(0)                  // tos; src_as, dst_as
		w = w.u8(24).u8(24).u16(0)                 // src_mask, dst_mask; pad2
	}
	return w
}

// field is a template's field: an information element and its length
// (0xffff: variable). An ie with the top bit set is an IPFIX enterprise
// field, of enterprise tPEN.
type field struct{ ie, len uint16 }

const tPEN = 29305 // an enterprise number

// The templates the tests use.
var (
	// v9Fields: a NetFlow v9 record with uptime times (FIRST_SWITCHED 22,
	// LAST_SWITCHED 21).
	v9Fields = []field{{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {6, 1}, {10, 2}, {14, 2}, {2, 4}, {1, 4}, {22, 4}, {21, 4}}
	// ipfixMilli: an IPFIX record with flowStartMilliseconds 152 and
	// flowEndMilliseconds 153.
	ipfixMilli = []field{{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {6, 1}, {10, 4}, {14, 4}, {2, 8}, {1, 8}, {152, 8}, {153, 8}}
	// ipfixUptime: IPFIX with flowStartSysUpTime 22 and flowEndSysUpTime
	// 21, which count from systemInitTimeMilliseconds 160.
	ipfixUptime = []field{{27, 16}, {28, 16}, {7, 2}, {11, 2}, {4, 1}, {10, 4}, {2, 8}, {1, 8}, {22, 4}, {21, 4}}
	// ipfixSampled: ipfixMilli with samplingInterval 34 in each record.
	ipfixSampled = append(slices.Clip(ipfixMilli), field{34, 4})
)

// record writes f as the fields say; a field it does not know is zeros.
func record(fields []field, f flow) wire {
	var w wire
	for _, fl := range fields {
		n := int(fl.len)
		if fl.ie&0x8000 != 0 {
			w = w.uint(0xdeadbeef, n)
			continue
		}
		switch fl.ie {
		case 8, 27:
			w = append(w, f.src.AsSlice()...)
		case 12, 28:
			w = append(w, f.dst.AsSlice()...)
		case 7:
			w = w.uint(uint64(f.sport), n)
		case 11:
			w = w.uint(uint64(f.dport), n)
		case 4:
			w = w.uint(uint64(f.proto), n)
		case 6:
			w = w.uint(uint64(f.flags), n)
		case 10:
			w = w.uint(uint64(f.in), n)
		case 14:
			w = w.uint(uint64(f.out), n)
		case 2:
			w = w.uint(f.packets, n)
		case 1:
			w = w.uint(f.bytes, n)
		case 22, 152:
			w = w.uint(f.start, n)
		case 21, 153:
			w = w.uint(f.end, n)
		case 34:
			w = w.uint(f.sampling, n)
		default:
			w = w.uint(0x5a5a5a5a, n)
		}
	}
	return w
}

// A set is one flow set (v9) or set (IPFIX) and the records it holds.
type set struct {
	b       wire
	records int
}

// templateSet returns a template set: id 0 for NetFlow v9, 2 for IPFIX.
func templateSet(id, tmpl uint16, fields ...field) set {
	w := wire{}.u16(id).u16(0)               // set id; length, below
	w = w.u16(tmpl).u16(uint16(len(fields))) // template id; field count
	for _, f := range fields {
		if f.ie&0x8000 != 0 {
			w = w.u16(f.ie).u16(f.len).u32(tPEN) // enterprise bit, id; length; PEN
			continue
		}
		w = w.u16(f.ie).u16(f.len) // field id; length
	}
	binary.BigEndian.PutUint16(w[2:], uint16(len(w)))
	return set{w, 1}
}

// v9OptionsTemplate returns a NetFlow v9 options template flow set.
func v9OptionsTemplate(tmpl uint16, scopes, options []field) set {
	w := wire{}.u16(1).u16(0)           // flow set id 1; length, below
	w = w.u16(tmpl)                     // template id
	w = w.u16(uint16(4 * len(scopes)))  // option scope length, bytes
	w = w.u16(uint16(4 * len(options))) // option length, bytes
	for _, f := range append(slices.Clip(scopes), options...) {
		w = w.u16(f.ie).u16(f.len) // field type; length
	}
	w = w.pad4()
	binary.BigEndian.PutUint16(w[2:], uint16(len(w)))
	return set{w, 1}
}

// ipfixOptionsTemplate returns an IPFIX options template set.
func ipfixOptionsTemplate(tmpl uint16, scopes, options []field) set {
	w := wire{}.u16(3).u16(0)                     // set id 3; length, below
	w = w.u16(tmpl)                               // template id
	w = w.u16(uint16(len(scopes) + len(options))) // field count
	w = w.u16(uint16(len(scopes)))                // scope field count
	for _, f := range append(slices.Clip(scopes), options...) {
		w = w.u16(f.ie).u16(f.len) // IE; length
	}
	binary.BigEndian.PutUint16(w[2:], uint16(len(w)))
	return set{w, 1}
}

// dataSet returns a data set of the template tmpl holding the records.
func dataSet(tmpl uint16, records ...wire) set {
	w := wire{}.u16(tmpl).u16(0) // set id: the template's; length, below
	for _, r := range records {
		w = append(w, r...)
	}
	w = w.pad4()
	binary.BigEndian.PutUint16(w[2:], uint16(len(w)))
	return set{w, len(records)}
}

// netflow9 returns a NetFlow v9 datagram of the sets from source id 7.
func netflow9(seq, uptime uint32, sets ...set) []byte {
	n := 0
	for _, s := range sets {
		n += s.records
	}
	w := wire{}.u16(9).u16(uint16(n)) // version; count: the records of all sets
	w = w.u32(uptime)                 // sysUpTime, ms
	w = w.u32(uint32(tExport.Unix())) // UNIX secs
	w = w.u32(seq)                    // sequence number: datagrams
	w = w.u32(7)                      // source id
	for _, s := range sets {
		w = append(w, s.b...)
	}
	return w
}

// ipfix returns an IPFIX message of the sets from observation domain 7.
func ipfix(seq uint32, sets ...set) []byte {
	w := wire{}.u16(10).u16(0)        // version; length, below
	w = w.u32(uint32(tExport.Unix())) // export time
	w = w.u32(seq)                    // sequence number: data records
	w = w.u32(7)                      // observation domain id
	for _, s := range sets {
		w = append(w, s.b...)
	}
	binary.BigEndian.PutUint16(w[2:], uint16(len(w)))
	return w
}

// datagrams is a DatagramSource of a fixed list, then io.EOF.
type datagrams struct {
	list []Datagram
	i    int
}

func (s *datagrams) ReadDatagram(d *Datagram) error {
	if s.i == len(s.list) {
		return io.EOF
	}
	*d = s.list[s.i]
	s.i++
	return nil
}

func (s *datagrams) Close() error { return nil }

// arrivals makes datagrams of the payloads from exporter from, a second
// apart from tArrive on.
func arrivals(from netip.Addr, payloads ...[]byte) []Datagram {
	out := make([]Datagram, len(payloads))
	for i, p := range payloads {
		out[i] = Datagram{Data: p, From: from, Port: 2055, Timestamp: tArrive.Add(time.Duration(i) * time.Second)}
	}
	return out
}

// outFrame is a frame Telemetry delivered, with its bytes kept and its
// packet decoded.
type outFrame struct {
	Frame
	pkt Packet
}

// readAll reads tel to its end, and fails t on any error but io.EOF.
func readAll(t testing.TB, tel *Telemetry) []outFrame {
	t.Helper()
	dec := NewDecoder()
	var out []outFrame
	for {
		var f Frame
		err := tel.ReadFrame(&f)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		f.Data = slices.Clone(f.Data)
		o := outFrame{Frame: f}
		if r := dec.Decode(&o.Frame, &o.pkt); r != DropNone {
			t.Fatalf("frame %d does not decode: %v", len(out), r)
		}
		out = append(out, o)
	}
}

// runTelemetry reads the datagrams through a Telemetry source of cfg.
func runTelemetry(t testing.TB, cfg TelemetryConfig, dgs []Datagram) ([]outFrame, TelemetryStats) {
	t.Helper()
	if cfg.Reorder == 0 {
		cfg.Reorder = 1024 // the default's 65536 frames take 30 MB to make
	}
	tel, err := NewTelemetry(cfg, &datagrams{list: dgs})
	if err != nil {
		t.Fatal(err)
	}
	out := readAll(t, tel)
	return out, tel.Stats()
}

// allowed lets the exporters tExporter and tExporter2 in; hold is the
// hold-back: an hour keeps every frame to the end of the input, so that
// each leaves at its own time, in time order.
func allowed(hold time.Duration) TelemetryConfig {
	return TelemetryConfig{Exporters: []ExporterConfig{{Addr: tExporter}, {Addr: tExporter2}}, HoldBack: hold}
}

// seen is what a test checks of a delivered frame: its time (from
// tArrive), lengths, what it stands for, and its decoded packet.
type seen struct {
	at               time.Duration
	length, captured int
	link             layers.LinkType
	sample           Sampled
	src, dst         netip.AddrPort
	proto, flags     uint8
}

func seenOf(o outFrame) seen {
	return seen{o.Timestamp.Sub(tArrive), o.Length, o.CaptureLength, o.LinkType, o.Sample,
		o.pkt.SrcAddrPort(), o.pkt.DstAddrPort(), o.pkt.Proto, o.pkt.TCPFlags}
}

func checkFrames(t *testing.T, out []outFrame, want []seen) {
	t.Helper()
	if len(out) != len(want) {
		t.Errorf("%d frames, want %d", len(out), len(want))
	}
	for i := range min(len(out), len(want)) {
		if got := seenOf(out[i]); got != want[i] {
			t.Errorf("frame %d:\n got %+v\nwant %+v", i, got, want[i])
		}
		if out[i].pkt.Sample != out[i].Sample {
			t.Errorf("frame %d: the decoded packet's Sample %+v, the frame's %+v", i, out[i].pkt.Sample, out[i].Sample)
		}
	}
}

// dropped returns a Dropped array with the counts given by reason.
func dropped(counts map[TelemetryDrop]uint64) [numTelemetryDrops]uint64 {
	var d [numTelemetryDrops]uint64
	for r, n := range counts {
		d[r] = n
	}
	return d
}

var (
	dnsSrc = netip.AddrPortFrom(tSrc, 53)
	dnsDst = netip.AddrPortFrom(tDst, 40000)
)

// spanned returns s standing for the time span.
func spanned(s Sampled, span time.Duration) Sampled {
	s.Span = span
	return s
}

// TestSFlowFlushSpan: the datagrams an sFlow sub-agent sends together are
// one flush, whose samples stand for the time since the flush before, at
// most sflowMaxSpan; the first flush, or one whose time went back, for
// none; the flush after a partial one, for the time since the flush before
// that.
func TestSFlowFlushSpan(t *testing.T) {
	ms := func(n float64) int64 { return int64(n * 1e6) }
	var d domain
	for _, c := range []struct {
		at   int64
		want time.Duration
	}{
		{ms(1000), 0},                           // the first flush
		{ms(1000.5), 0},                         // ...and its second datagram
		{ms(2000.4), 999900 * time.Microsecond}, // 999.9 ms after the datagram before
		{ms(2000.6), 999900 * time.Microsecond}, // the same flush
		{ms(2090), 999900 * time.Microsecond},   // still within 100 ms of its first
		{ms(2200), 110 * time.Millisecond},      // a flush of its own
		{ms(9000), sflowMaxSpan},                // after a silence: at most 2 s
		{ms(8000), 0},                           // time went back
		{ms(8500), 500 * time.Millisecond},      // and on from there
	} {
		if got := d.flushed(c.at); got != c.want {
			t.Errorf("datagram at %v ms: span %v, want %v", float64(c.at)/1e6, got, c.want)
		}
	}
	// Flushes of 8 datagrams a second, then one of a single datagram (its
	// agent sent the rest late), then one with two seconds': it stands for
	// the time since the last flush before the partial one.
	var p domain
	flush := func(at float64, n int) (span time.Duration) {
		for i := range n {
			span = p.flushed(ms(at + float64(i)*0.1))
		}
		return span
	}
	flush(1000, 8)
	if got := flush(2000, 8); got != 999300*time.Microsecond {
		t.Errorf("a full flush: span %v, want 999.3ms", got)
	}
	if got := flush(3000, 1); got != 999300*time.Microsecond {
		t.Errorf("the partial flush: span %v, want 999.3ms", got)
	}
	if got := flush(4000, 16); got != 1999300*time.Microsecond {
		t.Errorf("the flush after the partial one: span %v, want 1999.3ms (since the flush before it)", got)
	}
	if got := flush(5000, 8); got != 998500*time.Microsecond {
		t.Errorf("the next full flush: span %v, want 998.5ms", got)
	}
}

// TestTelemetrySFlow: each flow sample's raw packet header is a frame at
// its datagram's arrival, standing for rate packets of the sampled frame's
// length less its FCS; counter samples are passed over; a sequence number
// that skips counts a gap and the datagrams lost.
func TestTelemetrySFlow(t *testing.T) {
	d1 := sflowDatagram(10,
		sflowSample{format: 1, rate: 512, in: 3, out: 7, header: tFrame, headerProto: 1, frameLen: tFrameLen},
		sflowSample{format: 3, rate: 1000, in: 4, out: 9, header: tFrame[:64], headerProto: 1, frameLen: tFrameLen},
		sflowSample{format: 2, in: 3})
	d2 := sflowDatagram(14, sflowSample{format: 1, rate: 256, in: 3, out: 1<<30 | 2, header: tFrame, headerProto: 1, frameLen: tFrameLen})
	dgs := arrivals(tExporter, d1, d2)
	dgs[0].Accept, dgs[1].Accept = TelemetrySFlow, TelemetryNone
	out, st := runTelemetry(t, allowed(0), dgs)

	smp := func(rate, in, out uint32) Sampled {
		return Sampled{Exporter: tExporter, Format: TelemetrySFlow, InIf: in, OutIf: out, Rate: rate,
			Packets: uint64(rate), Bytes: uint64(rate) * uint64(tFrameWire)}
	}
	checkFrames(t, out, []seen{
		{0, tFrameWire, len(tFrame), layers.LinkTypeEthernet, smp(512, 3, 7), dnsSrc, dnsDst, ProtoUDP, 0},
		{0, tFrameWire, 64, layers.LinkTypeEthernet, smp(1000, 4, 9), dnsSrc, dnsDst, ProtoUDP, 0},
		// An output of format 1 (discarded) names no interface.
		// The second flush's samples stand for the second since the first.
		{time.Second, tFrameWire, len(tFrame), layers.LinkTypeEthernet, spanned(smp(256, 3, 0), time.Second), dnsSrc, dnsDst, ProtoUDP, 0},
	})
	want := TelemetryStats{Datagrams: 2, Samples: 3, Exporters: []ExporterStats{
		{Addr: tExporter, Datagrams: 2, Samples: 3, Rate: 256, SequenceGaps: 1, Lost: 3}}}
	if !statsEqual(st, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", st, want)
	}
}

func statsEqual(a, b TelemetryStats) bool {
	return slices.Equal(a.Exporters, b.Exporters) && a.Datagrams == b.Datagrams && a.Samples == b.Samples &&
		a.Records == b.Records && a.Dropped == b.Dropped && a.Evicted == b.Evicted && a.Early == b.Early && a.Late == b.Late
}

// TestTelemetryNetFlow5: a record is a packet built from its fields, of
// its average size, standing for its packets and bytes times the header's
// sampling interval; it ended as long before its arrival as its Last is
// before the header's uptime; the flow sequence counts flows.
func TestTelemetryNetFlow5(t *testing.T) {
	d1 := netflow5(0, 100_000, 1<<14|100,
		flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, in: 3, out: 7, packets: 10, bytes: 1000, start: 90_000, end: 95_000},
		flow{src: tSrc, dst: tDst, sport: 443, dport: 51000, proto: ProtoTCP, flags: TCPSyn | TCPAck, in: 3, out: 7, packets: 1, bytes: 40, start: 99_000, end: 99_000})
	d2 := netflow5(5, 101_000, 0, // flows 2 to 4 lost; unsampled
		flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, in: 3, out: 7, packets: 2, bytes: 100, start: 100_500, end: 101_000})
	out, st := runTelemetry(t, allowed(time.Hour), arrivals(tExporter, d1, d2))

	rec := func(rate uint32, pkts, bytes uint64, span time.Duration) Sampled {
		return Sampled{Exporter: tExporter, Format: TelemetryNetFlow5, InIf: 3, OutIf: 7, Rate: rate,
			Packets: pkts, Bytes: bytes, Span: span, Record: true}
	}
	https := netip.AddrPortFrom(tSrc, 443)
	checkFrames(t, out, []seen{
		{-5 * time.Second, 100, 28, layers.LinkTypeIPv4, rec(100, 1000, 100_000, 5*time.Second), dnsSrc, dnsDst, ProtoUDP, 0},
		{-time.Second, 40, 40, layers.LinkTypeIPv4, rec(100, 100, 4000, 0), https, netip.AddrPortFrom(tDst, 51000), ProtoTCP, TCPSyn | TCPAck},
		// The second datagram arrived a second later, just as the flow ended.
		{time.Second, 50, 28, layers.LinkTypeIPv4, rec(1, 2, 100, 500*time.Millisecond), dnsSrc, dnsDst, ProtoUDP, 0},
	})
	want := TelemetryStats{Datagrams: 2, Records: 3, Exporters: []ExporterStats{
		{Addr: tExporter, Datagrams: 2, Records: 3, Rate: 1, SequenceGaps: 1, Lost: 3}}}
	if !statsEqual(st, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", st, want)
	}
}

// TestTelemetryNetFlow9: a data set before its template counts a miss;
// the options template's record gives the sampling interval that the
// records of its source id take; records are timed by uptime.
func TestTelemetryNetFlow9(t *testing.T) {
	r1 := record(v9Fields, flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, in: 3, out: 7, packets: 3, bytes: 600, start: 189_000, end: 199_000})
	r2 := record(v9Fields, flow{src: tSrc, dst: tDst, sport: 443, dport: 51000, proto: ProtoTCP, flags: TCPRst, in: 3, out: 7, packets: 1, bytes: 40, start: 200_000, end: 200_000})
	opts := wire{}.u32(0).u32(64).u8(2) // scope System: 0; SAMPLING_INTERVAL 64; SAMPLING_ALGORITHM 2 (random)
	d1 := netflow9(0, 199_000, dataSet(256, r1))
	d2 := netflow9(1, 200_000,
		templateSet(0, 256, v9Fields...),
		v9OptionsTemplate(257, []field{{1, 4}}, []field{{34, 4}, {35, 1}}),
		dataSet(257, opts),
		dataSet(256, r1, r2))
	d3 := netflow9(3, 201_000, dataSet(256, r2)) // datagram 2 lost
	out, st := runTelemetry(t, allowed(time.Hour), arrivals(tExporter, d1, d2, d3))

	rec := func(pkts, bytes uint64, span time.Duration) Sampled {
		return Sampled{Exporter: tExporter, Format: TelemetryNetFlow9, InIf: 3, OutIf: 7, Rate: 64,
			Packets: pkts, Bytes: bytes, Span: span, Record: true}
	}
	rst := netip.AddrPortFrom(tSrc, 443)
	checkFrames(t, out, []seen{
		// Datagram 2 arrived at +1s, its uptime 200 s: r1 ended 1 s before.
		{0, 200, 28, layers.LinkTypeIPv4, rec(3*64, 600*64, 10*time.Second), dnsSrc, dnsDst, ProtoUDP, 0},
		{time.Second, 40, 40, layers.LinkTypeIPv4, rec(64, 40*64, 0), rst, netip.AddrPortFrom(tDst, 51000), ProtoTCP, TCPRst},
		// Datagram 3 at +2s, its uptime 201 s: r2 ended 1 s before.
		{time.Second, 40, 40, layers.LinkTypeIPv4, rec(64, 40*64, 0), rst, netip.AddrPortFrom(tDst, 51000), ProtoTCP, TCPRst},
	})
	want := TelemetryStats{Datagrams: 3, Records: 3, Dropped: dropped(map[TelemetryDrop]uint64{TelemetryTemplateMissing: 1}),
		Exporters: []ExporterStats{{Addr: tExporter, Datagrams: 3, Records: 3, Rate: 64, SequenceGaps: 1, Lost: 1, TemplateMisses: 1}}}
	if !statsEqual(st, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", st, want)
	}
}

// TestTelemetryIPFIX: records timed in Unix milliseconds (IEs 152, 153),
// and in uptime (22, 21) from the boot an options record gives
// (systemInitTimeMilliseconds 160); the sampling of PSAMP's systematic
// count-based sampling (305, 306) from options, or samplingInterval (34)
// in the record itself; the sequence counts data records, options data
// records among them.
func TestTelemetryIPFIX(t *testing.T) {
	exportMs := uint64(tExport.UnixMilli())
	opts := wire{}.u32(7).u32(1).u32(99).u64(exportMs - 3_600_000) // observationDomainId 7; 1 packet in 1+99; booted an hour before the export
	a := record(ipfixMilli, flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, in: 3, out: 7, packets: 4, bytes: 6000, start: exportMs - 12_000, end: exportMs - 2000})
	b := record(ipfixUptime, flow{src: tSrc6, dst: tDst6, sport: 123, dport: 5000, proto: ProtoUDP, in: 5, packets: 2, bytes: 160, start: 3_590_000, end: 3_596_000})
	c := record(ipfixSampled, flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, in: 3, out: 7, packets: 1, bytes: 1500, start: exportMs - 1000, end: exportMs - 1000, sampling: 10})
	d1 := ipfix(0,
		templateSet(2, 256, ipfixMilli...),
		templateSet(2, 257, ipfixUptime...),
		ipfixOptionsTemplate(258, []field{{149, 4}}, []field{{305, 4}, {306, 4}, {160, 8}}),
		dataSet(258, opts),
		dataSet(256, a),
		dataSet(257, b))
	d2 := ipfix(3, templateSet(2, 259, ipfixSampled...), dataSet(259, c)) // 3 data records before: a, b and the options record
	d3 := ipfix(10, dataSet(259, c))                                      // records 4 to 9 lost
	out, st := runTelemetry(t, allowed(time.Hour), arrivals(tExporter, d1, d2, d3))

	rec := func(in, out, rate uint32, pkts, bytes uint64, span time.Duration) Sampled {
		return Sampled{Exporter: tExporter, Format: TelemetryIPFIX, InIf: in, OutIf: out, Rate: rate,
			Packets: pkts, Bytes: bytes, Span: span, Record: true}
	}
	ntp := netip.AddrPortFrom(tSrc6, 123)
	checkFrames(t, out, []seen{
		{-4 * time.Second, 80, 48, layers.LinkTypeIPv6, rec(5, 0, 100, 200, 16_000, 6*time.Second), ntp, netip.AddrPortFrom(tDst6, 5000), ProtoUDP, 0},
		{-2 * time.Second, 1500, 28, layers.LinkTypeIPv4, rec(3, 7, 100, 400, 600_000, 10*time.Second), dnsSrc, dnsDst, ProtoUDP, 0},
		{0, 1500, 28, layers.LinkTypeIPv4, rec(3, 7, 10, 10, 15_000, 0), dnsSrc, dnsDst, ProtoUDP, 0},
		{time.Second, 1500, 28, layers.LinkTypeIPv4, rec(3, 7, 10, 10, 15_000, 0), dnsSrc, dnsDst, ProtoUDP, 0},
	})
	want := TelemetryStats{Datagrams: 3, Records: 4,
		Exporters: []ExporterStats{{Addr: tExporter, Datagrams: 3, Records: 4, Rate: 10, SequenceGaps: 1, Lost: 6}}}
	if !statsEqual(st, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", st, want)
	}
}

// TestTelemetryBadInput: what an attacker can send the collector is
// counted under its reason, with no panic, and delivers only what counts.
func TestTelemetryBadInput(t *testing.T) {
	exportMs := uint64(tExport.UnixMilli())
	sample := func(rate uint32) []byte {
		return sflowDatagram(1, sflowSample{format: 1, rate: rate, in: 3, header: tFrame, headerProto: 1, frameLen: tFrameLen})
	}
	good := flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, in: 3, packets: 1, bytes: 100}
	v5 := func(f flow) []byte {
		if f.end == 0 {
			f.start, f.end = 99_000, 99_000
		}
		return netflow5(0, 100_000, 0, f)
	}
	milli := func(f flow) []byte {
		if f.end == 0 {
			f.start, f.end = exportMs-1000, exportMs-1000
		}
		return ipfix(0, templateSet(2, 256, ipfixMilli...), dataSet(256, record(ipfixMilli, f)))
	}
	sampled := func(rate uint64) []byte {
		f := good
		f.start, f.end, f.sampling = exportMs, exportMs, rate
		return ipfix(0, templateSet(2, 256, ipfixSampled...), dataSet(256, record(ipfixSampled, f)))
	}
	v9 := netflow9(0, 200_000, templateSet(0, 256, v9Fields...),
		dataSet(256, record(v9Fields, flow{src: tSrc, dst: tDst, packets: 1, start: 199_000, end: 199_000})))
	expanded := sflowDatagram(1, sflowSample{format: 3, rate: 10, in: 3, header: tFrame, headerProto: 1, frameLen: tFrameLen, records: 0xffffffff})
	v5Count := v5(good)
	binary.BigEndian.PutUint16(v5Count[2:], 0xffff) // 65535 flows, one there
	ipfixLong := milli(good)
	binary.BigEndian.PutUint16(ipfixLong[2:], uint16(len(ipfixLong)+4)) // a length past the datagram
	// A template of the addresses among fields no one knows: a 3-byte IE
	// 999, an enterprise field, and a variable-length one of 5 bytes.
	odd := []field{{8, 4}, {999, 3}, {0x8000 | 42, 4}, {12, 4}, {998, 0xffff}}
	oddRec := append(record(odd[:4], good), 5, 'h', 'e', 'l', 'l', 'o')
	onlyOdd := []field{{999, 4}, {0x8000 | 42, 4}}

	cases := []struct {
		name   string
		cfg    TelemetryConfig // zero: allowed(0)
		from   netip.Addr      // zero: tExporter
		accept TelemetryFormat
		dgs    [][]byte
		frames int
		drops  map[TelemetryDrop]uint64
	}{
		{name: "sflow cut in its record", dgs: [][]byte{sample(10)[:150]}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "sflow cut in its header", dgs: [][]byte{sample(10)[:20]}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "sflow of garbage", dgs: [][]byte{append([]byte{0, 0, 0, 5}, "\x00\x00\x00\x07garbage, not an address type"...)}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "sflow expanded sample of 2^32-1 records", dgs: [][]byte{expanded}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "no format", dgs: [][]byte{[]byte("GET / HTTP/1.1\r\n")}, drops: map[TelemetryDrop]uint64{TelemetryWrongFormat: 1}},
		{name: "too short for a version", dgs: [][]byte{{0, 5}}, drops: map[TelemetryDrop]uint64{TelemetryWrongFormat: 1}},
		{name: "netflow on the sflow socket", accept: TelemetrySFlow, dgs: [][]byte{v5(good)}, drops: map[TelemetryDrop]uint64{TelemetryWrongFormat: 1}},
		{name: "sflow on the netflow socket", accept: TelemetryNetFlow9, dgs: [][]byte{sample(10)}, drops: map[TelemetryDrop]uint64{TelemetryWrongFormat: 1}},
		{name: "v5 cut", dgs: [][]byte{v5(good)[:60]}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "v5 counting flows it does not hold", dgs: [][]byte{v5Count}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "v9 cut in its data set", dgs: [][]byte{v9[:len(v9)-5]}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "v9 cut in its header", dgs: [][]byte{v9[:12]}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "ipfix cut", dgs: [][]byte{milli(good)[:60]}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "ipfix length past the datagram", dgs: [][]byte{ipfixLong}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "ipfix set of length 0", dgs: [][]byte{ipfix(0, set{b: wire{}.u16(256).u16(0)})}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "ipfix set id 7", dgs: [][]byte{ipfix(0, set{b: wire{}.u16(7).u16(8).u32(0)})}, drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},

		// Unknown information elements are passed over: a record with
		// addresses counts, one without is not IP.
		{name: "template of unknown fields", frames: 1, dgs: [][]byte{ipfix(0,
			templateSet(2, 256, odd...), templateSet(2, 257, onlyOdd...),
			dataSet(256, oddRec), dataSet(257, record(onlyOdd, good)))},
			drops: map[TelemetryDrop]uint64{TelemetryNotIP: 1}},
		// A template of no fields withdraws one (RFC 7011 8.1): its data
		// after it has no template.
		{name: "template withdrawn", dgs: [][]byte{ipfix(0, templateSet(2, 256, ipfixMilli...), templateSet(2, 256), dataSet(256, record(ipfixMilli, good)))},
			drops: map[TelemetryDrop]uint64{TelemetryTemplateMissing: 1}},
		// A template whose records have no fixed length would have
		// goflow2's decoder read its data set forever.
		{name: "template of fields of length 0", dgs: [][]byte{ipfix(0, templateSet(2, 256, field{8, 0}, field{12, 0}), dataSet(256, wire{1, 2, 3, 4}))},
			drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "v9 options template of fields of length 0", dgs: [][]byte{netflow9(0, 1000, v9OptionsTemplate(257, []field{{1, 0}}, []field{{34, 0}}), dataSet(257, wire{1, 2, 3, 4}))},
			drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "template of variable-length fields only", dgs: [][]byte{ipfix(0, templateSet(2, 256, field{8, 0xffff}, field{12, 0xffff}), dataSet(256, wire{4, 1, 2, 3, 4, 4, 5, 6, 7, 8}))},
			drops: map[TelemetryDrop]uint64{TelemetryMalformed: 1}},
		{name: "template of 600 fields", dgs: [][]byte{ipfix(0, templateSet(2, 256, slices.Repeat([]field{{999, 1}}, 600)...))},
			drops: map[TelemetryDrop]uint64{TelemetryTemplateLimit: 1}},

		{name: "data before template v9", dgs: [][]byte{netflow9(0, 1000, dataSet(256, record(v9Fields, good)))}, drops: map[TelemetryDrop]uint64{TelemetryTemplateMissing: 1}},
		{name: "data before template ipfix", dgs: [][]byte{ipfix(0, dataSet(256, record(ipfixMilli, good)), dataSet(300, wire{1, 2, 3, 4}))}, drops: map[TelemetryDrop]uint64{TelemetryTemplateMissing: 2}},

		{name: "sflow sampling 0", dgs: [][]byte{sample(0)}, drops: map[TelemetryDrop]uint64{TelemetrySamplingInvalid: 1}},
		{name: "sflow sampling 2^32-1", dgs: [][]byte{sample(0xffffffff)}, drops: map[TelemetryDrop]uint64{TelemetrySamplingInvalid: 1}},
		{name: "sflow sampling 2^24, the most believed", frames: 1, dgs: [][]byte{sample(1 << 24)}},
		{name: "ipfix record sampling 0", dgs: [][]byte{sampled(0)}, drops: map[TelemetryDrop]uint64{TelemetrySamplingInvalid: 1}},
		{name: "ipfix record sampling 2^32-1", dgs: [][]byte{sampled(0xffffffff)}, drops: map[TelemetryDrop]uint64{TelemetrySamplingInvalid: 1}},
		{name: "v9 options sampling 2^32-1", dgs: [][]byte{netflow9(0, 200_000,
			templateSet(0, 256, v9Fields...), v9OptionsTemplate(257, []field{{1, 4}}, []field{{34, 4}}),
			dataSet(257, wire{}.u32(0).u32(0xffffffff)), dataSet(256, record(v9Fields, flow{src: tSrc, dst: tDst, start: 199_000, end: 199_000})))},
			drops: map[TelemetryDrop]uint64{TelemetrySamplingInvalid: 1}},
		{name: "configured sampling past the exported", frames: 1, cfg: TelemetryConfig{Exporters: []ExporterConfig{{Addr: tExporter, Sampling: 10}}},
			dgs: [][]byte{sample(0xffffffff)}},

		{name: "v5 end before start", dgs: [][]byte{v5(flow{src: tSrc, dst: tDst, start: 95_000, end: 90_000})}, drops: map[TelemetryDrop]uint64{TelemetryTimeInvalid: 1}},
		{name: "v5 end 2 minutes after export", dgs: [][]byte{v5(flow{src: tSrc, dst: tDst, start: 99_000, end: 220_000})}, drops: map[TelemetryDrop]uint64{TelemetryTimeInvalid: 1}},
		{name: "v5 end 30 s after export, clocks apart", frames: 1, dgs: [][]byte{v5(flow{src: tSrc, dst: tDst, start: 99_000, end: 130_000})}},
		{name: "ipfix end before start", dgs: [][]byte{milli(flow{src: tSrc, dst: tDst, start: exportMs, end: exportMs - 1})}, drops: map[TelemetryDrop]uint64{TelemetryTimeInvalid: 1}},
		{name: "ipfix end a day after export", dgs: [][]byte{milli(flow{src: tSrc, dst: tDst, start: exportMs, end: exportMs + 86_400_000})}, drops: map[TelemetryDrop]uint64{TelemetryTimeInvalid: 1}},
		{name: "ipfix end at 2^64-1 ms", dgs: [][]byte{milli(flow{src: tSrc, dst: tDst, start: exportMs, end: 1<<64 - 1})}, drops: map[TelemetryDrop]uint64{TelemetryTimeInvalid: 1}},
		{name: "v9 uptime end 2 minutes after export", dgs: [][]byte{netflow9(0, 200_000, templateSet(0, 256, v9Fields...),
			dataSet(256, record(v9Fields, flow{src: tSrc, dst: tDst, start: 200_000, end: 320_000})))},
			drops: map[TelemetryDrop]uint64{TelemetryTimeInvalid: 1}},

		{name: "unknown exporter", from: netip.MustParseAddr("198.18.0.1"), dgs: [][]byte{sample(10), v5(good)}, drops: map[TelemetryDrop]uint64{TelemetryUnknownExporter: 2}},
		{name: "unknown exporter allowed", cfg: TelemetryConfig{AllowUnknown: true}, from: netip.MustParseAddr("198.18.0.1"), frames: 2, dgs: [][]byte{sample(10), v5(good)}},
		{name: "exporter as an IPv4-mapped IPv6 address", from: netip.AddrFrom16(tExporter.As16()), frames: 1, dgs: [][]byte{sample(10)}},
		{name: "interface that does not count", cfg: TelemetryConfig{Exporters: []ExporterConfig{{Addr: tExporter, Interfaces: []uint32{7, 4}}}},
			frames: 1, dgs: [][]byte{sample(10), v5(good), v5(flow{src: tSrc, dst: tDst, in: 4, packets: 1})}, drops: map[TelemetryDrop]uint64{TelemetryInterfaceIgnored: 2}},

		{name: "sflow sample of no packet header", dgs: [][]byte{sflowDatagram(1, sflowSample{format: 1, rate: 10, in: 3})}, drops: map[TelemetryDrop]uint64{TelemetryNotIP: 1}},
		{name: "sflow header of another protocol", dgs: [][]byte{sflowDatagram(1, sflowSample{format: 1, rate: 10, in: 3, header: tFrame, headerProto: 2, frameLen: tFrameLen})}, drops: map[TelemetryDrop]uint64{TelemetryNotIP: 1}},
		{name: "v5 flow of one address family only", dgs: [][]byte{ipfix(0, templateSet(2, 256, field{8, 4}, field{28, 16}), dataSet(256, append(wire(tSrc.AsSlice()), tDst6.AsSlice()...)))},
			drops: map[TelemetryDrop]uint64{TelemetryNotIP: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.Exporters == nil && !cfg.AllowUnknown {
				cfg = allowed(0)
			}
			from := tc.from
			if !from.IsValid() {
				from = tExporter
			}
			dgs := arrivals(from, tc.dgs...)
			for i := range dgs {
				dgs[i].Accept = tc.accept
			}
			out, st := runTelemetry(t, cfg, dgs)
			if len(out) != tc.frames {
				t.Errorf("%d frames, want %d", len(out), tc.frames)
			}
			if want := dropped(tc.drops); st.Dropped != want {
				t.Errorf("dropped %v, want %v", st.Dropped, want)
			}
			if st.Datagrams != uint64(len(tc.dgs)) || st.Samples+st.Records != uint64(len(out)) {
				t.Errorf("%d datagrams, %d samples and %d records for %d datagrams and %d frames", st.Datagrams, st.Samples, st.Records, len(tc.dgs), len(out))
			}
			var malformed, misses uint64
			for _, e := range st.Exporters {
				malformed += e.Malformed
				misses += e.TemplateMisses
			}
			if malformed != st.Dropped[TelemetryMalformed] || misses != st.Dropped[TelemetryTemplateMissing] {
				t.Errorf("exporters' malformed %d, template misses %d; dropped %v", malformed, misses, st.Dropped)
			}
			for _, o := range out {
				if o.Sample.Packets == 0 || o.Sample.Rate == 0 || o.Sample.Rate > maxSamplingRate {
					t.Errorf("frame stands for %d packets at rate %d", o.Sample.Packets, o.Sample.Rate)
				}
			}
		})
	}
}

// TestTelemetryTruncated: a datagram cut anywhere is refused and
// counted, whatever the format: goflow2's decoders would read what is
// there as if it were whole. (NetFlow v9's header counts records, not
// sets: a v9 datagram cut between two sets cannot be told from a whole
// one, and is not cut here.)
func TestTelemetryTruncated(t *testing.T) {
	exportMs := uint64(tExport.UnixMilli())
	g := flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, packets: 1, bytes: 100, start: exportMs, end: exportMs}
	for _, whole := range []struct {
		name string
		b    []byte
	}{
		{"sflow", sflowDatagram(1,
			sflowSample{format: 1, rate: 10, in: 3, header: tFrame, headerProto: 1, frameLen: tFrameLen},
			sflowSample{format: 2, in: 3},
			sflowSample{format: 3, rate: 10, in: 3, header: tFrame[:60], headerProto: 1, frameLen: tFrameLen})},
		{"netflow5", netflow5(0, 100_000, 0, flow{src: tSrc, dst: tDst, start: 99_000, end: 99_000}, flow{src: tSrc, dst: tDst, start: 99_000, end: 99_000})},
		{"ipfix", ipfix(0, templateSet(2, 256, ipfixMilli...), dataSet(256, record(ipfixMilli, g), record(ipfixMilli, g)))},
	} {
		for n := 4; n < len(whole.b); n++ {
			_, st := runTelemetry(t, allowed(0), arrivals(tExporter, whole.b[:n]))
			if st.Dropped[TelemetryMalformed] != 1 || st.Samples+st.Records != 0 {
				t.Fatalf("%s cut to %d of %d bytes: %d samples, %d records, dropped %v", whole.name, n, len(whole.b), st.Samples, st.Records, st.Dropped)
			}
		}
	}
}

// TestTelemetryTemplateFlood: an exporter's templates are bounded; past
// the bound a new one is refused and counted, the ones known stay and
// can be sent again, and each exporter has its own.
func TestTelemetryTemplateFlood(t *testing.T) {
	exportMs := uint64(tExport.UnixMilli())
	g := flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, packets: 1, bytes: 100, start: exportMs, end: exportMs}
	var dgs []Datagram
	for i := range 10 {
		dgs = append(dgs, arrivals(tExporter, ipfix(0, templateSet(2, 256+uint16(i), ipfixMilli...)))...)
	}
	dgs = append(dgs, arrivals(tExporter,
		ipfix(0, templateSet(2, 256, ipfixMilli...)), // known: taken again
		ipfix(0, dataSet(256, record(ipfixMilli, g)), dataSet(259, record(ipfixMilli, g)), dataSet(265, record(ipfixMilli, g))))...)
	dgs = append(dgs, arrivals(tExporter2, ipfix(0, templateSet(2, 300, ipfixMilli...), dataSet(300, record(ipfixMilli, g))))...)

	cfg := allowed(0)
	cfg.MaxTemplates = 4
	tel, err := NewTelemetry(cfg, &datagrams{list: dgs})
	if err != nil {
		t.Fatal(err)
	}
	out := readAll(t, tel)
	st := tel.Stats()
	if len(out) != 3 || st.Dropped != dropped(map[TelemetryDrop]uint64{TelemetryTemplateLimit: 6, TelemetryTemplateMissing: 1}) {
		t.Errorf("%d frames, dropped %v: want 3, template_limit 6, template_missing 1", len(out), st.Dropped)
	}
	for _, a := range []netip.Addr{tExporter, tExporter2} {
		e, _ := tel.exporters.Peek(a)
		if n := len(e.tmpl.m); n > cfg.MaxTemplates {
			t.Errorf("%s keeps %d templates, more than %d", a, n, cfg.MaxTemplates)
		}
	}
}

// TestTelemetryExporterBound: the exporters kept are bounded; the least
// recently heard is forgotten and counted.
func TestTelemetryExporterBound(t *testing.T) {
	cfg := TelemetryConfig{AllowUnknown: true, MaxExporters: 2}
	var dgs []Datagram
	for i := range 5 {
		d := sflowDatagram(uint32(i), sflowSample{format: 1, rate: 10, in: 3, header: tFrame, headerProto: 1, frameLen: tFrameLen})
		dgs = append(dgs, arrivals(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), d)...)
	}
	out, st := runTelemetry(t, cfg, dgs)
	if len(out) != 5 || st.Evicted != 3 || len(st.Exporters) != 2 ||
		st.Exporters[0].Addr != netip.MustParseAddr("198.18.0.3") || st.Exporters[1].Addr != netip.MustParseAddr("198.18.0.4") {
		t.Errorf("%d frames, %d evicted, exporters %+v", len(out), st.Evicted, st.Exporters)
	}
}

// TestTelemetryLiveTime: live, time never runs backward in what leaves.
// With no hold-back a record is put at its arrival however long before it
// ended; with one, a record is put at its own time unless that is older
// than the hold-back, when it is put at arrival less the hold-back and
// counted late; and datagrams that arrive out of order (two sockets) or a
// full heap do not move time back either.
func TestTelemetryLiveTime(t *testing.T) {
	// Records ending 3 s and 30 s before their export, an sFlow sample
	// from another exporter that arrived half a second before the
	// NetFlow datagram was read, and a record that ended 1 s before.
	v9 := func(seq uint32, ago ...uint32) []byte {
		sets := []set{templateSet(0, 256, v9Fields...)}
		for _, a := range ago {
			sets = append(sets, dataSet(256, record(v9Fields, flow{src: tSrc, dst: tDst, packets: 5, start: uint64(100_000 - a), end: uint64(100_000 - a)})))
		}
		return netflow9(seq, 100_000, sets...)
	}
	dgs := arrivals(tExporter, v9(0, 3000, 30_000), nil, v9(1, 1000))
	dgs[1] = Datagram{Data: sflowDatagram(1, sflowSample{format: 1, rate: 10, in: 3, header: tFrame, headerProto: 1, frameLen: tFrameLen}),
		From: tExporter2, Timestamp: tArrive.Add(-500 * time.Millisecond)}
	for _, tc := range []struct {
		hold    time.Duration
		reorder int
		want    []time.Duration
		late    uint64
	}{
		{0, 0, []time.Duration{0, 0, 0, 2 * time.Second}, 0},
		// The 30 s record is older than the 10 s hold-back: at -10 s. The
		// sample arrived at -0.5 s, the 3 s one ended at -3 s.
		{10 * time.Second, 0, []time.Duration{-10 * time.Second, -3 * time.Second, -500 * time.Millisecond, time.Second}, 1},
		// A heap of one frame lets each go as the next comes: the record
		// of -30 s comes after the one of -3 s left, and takes its time.
		{10 * time.Second, 1, []time.Duration{-3 * time.Second, -3 * time.Second, -500 * time.Millisecond, time.Second}, 2},
	} {
		cfg := allowed(tc.hold)
		cfg.Reorder = tc.reorder
		out, st := runTelemetry(t, cfg, dgs)
		var got []time.Duration
		for i, o := range out {
			got = append(got, o.Timestamp.Sub(tArrive))
			if i > 0 && o.Timestamp.Before(out[i-1].Timestamp) {
				t.Errorf("hold %v, heap %d: frame %d at %v, before the one before it", tc.hold, tc.reorder, i, got[i])
			}
		}
		if !slices.Equal(got, tc.want) || st.Late != tc.late {
			t.Errorf("hold %v, heap %d: frames at %v, %d late; want %v, %d late", tc.hold, tc.reorder, got, st.Late, tc.want, tc.late)
		}
	}
}

// TestTelemetryTimeout: live, a read timeout with nothing waiting is
// returned to the caller, and reading goes on after it.
func TestTelemetryTimeout(t *testing.T) {
	src := &timeouts{datagrams: datagrams{list: arrivals(tExporter,
		sflowDatagram(1, sflowSample{format: 1, rate: 10, in: 3, header: tFrame, headerProto: 1, frameLen: tFrameLen}))}}
	tel, err := NewTelemetry(allowed(0), src)
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	if err := tel.ReadFrame(&f); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first read: %v, want ErrTimeout", err)
	}
	if err := tel.ReadFrame(&f); err != nil || f.Sample.Packets != 10 {
		t.Fatalf("second read: %v, %+v", err, f.Sample)
	}
	if err := tel.ReadFrame(&f); !errors.Is(err, io.EOF) {
		t.Fatalf("third read: %v, want io.EOF", err)
	}
}

// timeouts is a DatagramSource whose first read times out.
type timeouts struct {
	datagrams
	timedOut bool
}

func (s *timeouts) ReadDatagram(d *Datagram) error {
	if !s.timedOut {
		s.timedOut = true
		return ErrTimeout
	}
	return s.datagrams.ReadDatagram(d)
}

// TestRecordFrames: the packet built from a flow record decodes, with the
// record's addresses and ports, whatever its protocol and size (0: a
// record of no bytes); IPv6's protocol 0 is written "no next header" (0
// would be a hop-by-hop header), and an IPv6 packet has a byte of payload
// at least (a payload length of 0 is a jumbogram's). The decoder looks
// into no tunnel for a record: not for the IP encapsulations (IPv4, IPv6,
// GRE), nor for a tunnel's port (VXLAN's 4789, GENEVE's 6081, GTP-U's
// 2152), where a record's packet has nothing inside.
func TestRecordFrames(t *testing.T) {
	dec := NewDecoder()
	var buf [recordFrameSize]byte
	for _, c := range []struct {
		rec  flowRecord
		size int
	}{{flowRecord{src: tSrc, dst: tDst}, 100}, {flowRecord{src: tSrc, dst: tDst}, 0}, {flowRecord{src: tSrc6, dst: tDst6}, 100}, {flowRecord{src: tSrc6, dst: tDst6}, 40}, {flowRecord{src: tSrc6, dst: tDst6}, 0}} {
		rec := c.rec
		for i := range 256 + 3 {
			proto, dport := i, uint16(53)
			if i >= 256 {
				proto, dport = ProtoUDP, []uint16{4789, 6081, 2152}[i-256]
			}
			rec.proto, rec.sport, rec.dport = uint8(proto), 1234, dport
			b, n := buildRecordFrame(&buf, &rec, c.size)
			f := Frame{Data: b, CaptureLength: len(b), Length: n, LinkType: rawLinkType(rec.src.Is4()), Sample: Sampled{Packets: 1, Record: true}}
			var p Packet
			r := dec.Decode(&f, &p)
			ports := proto != ProtoUDP && proto != ProtoTCP || p.HasPorts && p.SrcPort == 1234 && p.DstPort == dport
			if r != DropNone || p.Src != rec.src || p.Dst != rec.dst || !ports || p.Length != max(n, c.size) {
				t.Errorf("%v protocol %d, size %d: %v, %v > %v, ports %v %d > %d, length %d", rec.src, proto, c.size, r, p.Src, p.Dst, p.HasPorts, p.SrcPort, p.DstPort, p.Length)
			}
		}
	}
}

// TestTelemetrySequence: an IPFIX exporter numbers a message by the data
// records before it (RFC 7011), options records among them or not, or by
// those up to its end (softflowd, which leaves options records out): each
// is in sequence, and a message lost counts one gap of its records once a
// number has told the numbering; before that, the least it can have lost.
func TestTelemetrySequence(t *testing.T) {
	exportMs := uint64(tExport.UnixMilli())
	g := record(ipfixMilli, flow{src: tSrc, dst: tDst, packets: 1, start: exportMs, end: exportMs})
	// message returns an IPFIX message numbered seq of data records and
	// opts options records.
	message := func(seq uint32, data, opts int) []byte {
		sets := []set{templateSet(2, 256, ipfixMilli...), ipfixOptionsTemplate(258, []field{{149, 4}}, []field{{34, 4}})}
		for range opts {
			sets = append(sets, dataSet(258, wire{}.u32(7).u32(1)))
		}
		for range data {
			sets = append(sets, dataSet(256, g))
		}
		return ipfix(seq, sets...)
	}
	type msg struct {
		seq        uint32
		data, opts int
	}
	for _, c := range []struct {
		name string
		msgs []msg
		gaps uint64
		lost uint64
	}{
		// 2+1, 3, 1, then 2 lost, then 1.
		{"before, options counted", []msg{{0, 2, 1}, {3, 3, 0}, {6, 1, 0}, {9, 1, 0}}, 1, 2},
		{"before, options not counted", []msg{{0, 2, 1}, {2, 3, 0}, {5, 1, 0}, {8, 1, 0}}, 1, 2},
		{"after, options not counted", []msg{{2, 2, 1}, {5, 3, 0}, {6, 1, 0}, {9, 1, 0}}, 1, 2},
		{"after, options counted", []msg{{3, 2, 1}, {6, 3, 0}, {7, 1, 0}, {10, 1, 0}}, 1, 2},
		{"no loss", []msg{{0, 2, 0}, {2, 3, 0}, {5, 1, 0}, {6, 1, 0}}, 0, 0},
		// 5 lost between a message of 2 and one of 3, the numbering not
		// known yet: at least 4.
		{"loss before the numbering is known", []msg{{0, 2, 0}, {7, 3, 0}}, 1, 4},
		// A restart, and a message that came late: no loss.
		{"restart", []msg{{1000, 2, 0}, {1002, 2, 0}, {0, 2, 0}, {2, 2, 0}}, 0, 0},
	} {
		var dgs [][]byte
		for _, m := range c.msgs {
			dgs = append(dgs, message(m.seq, m.data, m.opts))
		}
		_, st := runTelemetry(t, allowed(0), arrivals(tExporter, dgs...))
		if e := st.Exporters[0]; e.SequenceGaps != c.gaps || e.Lost != c.lost {
			t.Errorf("%s: %d gaps, %d lost; want %d, %d", c.name, e.SequenceGaps, e.Lost, c.gaps, c.lost)
		}
	}
}
