package capture

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"
)

// A fuzz input is a sequence of datagrams, so that templates, options and
// sequence numbers carry from one to the next. Each datagram is a header
// of three bytes, then its bytes:
//
//	flags  bits 0-1: the exporter (tExporter, tExporter2, two unknown)
//	       bit 2: it arrived 3 s before the one before it (another socket)
//	length 16 bits, big-endian; past the input's end, the rest of it
const fuzzHeader = 3

// fuzzDatagrams joins datagrams from tExporter into a fuzz input.
func fuzzDatagrams(dgs ...[]byte) []byte {
	var w wire
	for _, d := range dgs {
		w = append(w.u8(0).u16(uint16(len(d))), d...)
	}
	return w
}

// splitDatagrams reads a fuzz input's datagrams; accept is the format of
// the socket they came in on.
func splitDatagrams(b []byte, accept TelemetryFormat) []Datagram {
	exporters := [4]netip.Addr{tExporter, tExporter2, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
	var out []Datagram
	at := tArrive
	for len(b) >= fuzzHeader {
		flags, n := b[0], int(b[1])<<8|int(b[2])
		b = b[fuzzHeader:]
		n = min(n, len(b))
		if flags&4 != 0 {
			at = at.Add(-3 * time.Second)
		} else {
			at = at.Add(time.Second)
		}
		out = append(out, Datagram{Data: b[:n], From: exporters[flags&3], Port: 2055, Timestamp: at, Accept: accept})
		b = b[n:]
	}
	return out
}

// fuzzTelemetry reads the datagrams of a fuzz input live (no hold-back)
// and replayed, and checks what must hold of any input: no panic, frames
// that stand for packets at a believable rate, never more than the input
// could hold, in time order, and stats that agree with each other.
func fuzzTelemetry(t *testing.T, data []byte, accept TelemetryFormat) {
	dgs := splitDatagrams(data, accept)
	for _, hold := range []time.Duration{0, -1} {
		cfg := TelemetryConfig{
			Exporters: []ExporterConfig{{Addr: tExporter}, {Addr: tExporter2, Interfaces: []uint32{3}}},
			// An unknown exporter is let in, and one of the four is
			// forgotten when they are more than three.
			AllowUnknown: true, MaxExporters: 3, MaxTemplates: 8,
			HoldBack: hold, Reorder: 64,
		}
		tel, err := NewTelemetry(cfg, &datagrams{list: dgs})
		if err != nil {
			t.Fatal(err)
		}
		dec := NewDecoder()
		var f Frame
		var p Packet
		var frames, packets uint64
		var last time.Time
		for {
			err := tel.ReadFrame(&f)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			frames++
			s := &f.Sample
			if s.Packets == 0 || s.Rate == 0 || s.Rate > maxSamplingRate || !s.Exporter.IsValid() || s.Format == TelemetryNone {
				t.Fatalf("frame stands for %d packets at rate %d from %v in %v", s.Packets, s.Rate, s.Exporter, s.Format)
			}
			if f.CaptureLength != len(f.Data) || f.Length < f.CaptureLength || len(f.Data) > heldBytes {
				t.Fatalf("frame of %d bytes: CaptureLength %d, Length %d", len(f.Data), f.CaptureLength, f.Length)
			}
			if f.Timestamp.Before(last) {
				t.Fatalf("hold %v: frame %d at %v, before the one before it at %v", hold, frames, f.Timestamp, last)
			}
			last = f.Timestamp
			if s.Record {
				// A record's packet is built here: it decodes, but for
				// the IP encapsulations (see TestRecordFrames).
				if r := dec.Decode(&f, &p); r != DropNone || !p.Src.IsValid() {
					t.Fatalf("a record's packet does not decode: %v", r)
				}
			}
			packets += s.Packets
		}
		st := tel.Stats()
		counted := st.Samples + st.Records
		// A sample takes 60 bytes or more, a record 8 (two IPv4
		// addresses); replayed, a record leaves in maxPiecesPerRecord+1
		// pieces at most.
		if counted > uint64(len(data)/8) {
			t.Fatalf("%d samples and records from %d bytes", counted, len(data))
		}
		if hold == 0 && frames != counted || frames > counted*(maxPiecesPerRecord+1) {
			t.Fatalf("hold %v: %d frames for %d samples and records", hold, frames, counted)
		}
		if st.Datagrams != uint64(len(dgs)) {
			t.Fatalf("%d datagrams counted of %d", st.Datagrams, len(dgs))
		}
		if len(st.Exporters) > cfg.MaxExporters {
			t.Fatalf("%d exporters kept, more than %d", len(st.Exporters), cfg.MaxExporters)
		}
		var e ExporterStats
		for _, x := range st.Exporters {
			e.Datagrams += x.Datagrams
			e.Samples += x.Samples
			e.Records += x.Records
			e.Malformed += x.Malformed
			e.TemplateMisses += x.TemplateMisses
			if x.Rate > maxSamplingRate {
				t.Fatalf("exporter %v at rate %d", x.Addr, x.Rate)
			}
			if ex, _ := tel.exporters.Peek(x.Addr); len(ex.tmpl.m) > cfg.MaxTemplates {
				t.Fatalf("exporter %v keeps %d templates", x.Addr, len(ex.tmpl.m))
			}
		}
		taken := st.Datagrams - st.Dropped[TelemetryUnknownExporter] - st.Dropped[TelemetryWrongFormat] - st.Dropped[TelemetryNotUDP]
		if st.Evicted == 0 && (e.Datagrams != taken || e.Samples != st.Samples || e.Records != st.Records ||
			e.Malformed != st.Dropped[TelemetryMalformed] || e.TemplateMisses != st.Dropped[TelemetryTemplateMissing]) ||
			e.Datagrams > taken || st.Dropped[TelemetryMalformed] > taken {
			t.Fatalf("stats disagree: %+v", st)
		}
	}
}

// FuzzTelemetrySFlow fuzzes sequences of sFlow v5 datagrams, as an sFlow
// socket takes them.
func FuzzTelemetrySFlow(f *testing.F) {
	flowSample := sflowSample{format: 1, rate: 512, in: 3, out: 7, header: tFrame, headerProto: 1, frameLen: tFrameLen}
	expanded := sflowSample{format: 3, rate: 1000, in: 4, out: 9, header: tFrame[:64], headerProto: 1, frameLen: tFrameLen}
	counters := sflowSample{format: 2, in: 3}
	whole := sflowDatagram(10, flowSample, expanded, counters)
	f.Add(fuzzDatagrams(whole))                                                                                                                        // a flow sample, an expanded one, a counter sample
	f.Add(fuzzDatagrams(whole, sflowDatagram(14, flowSample)))                                                                                         // then 3 datagrams lost
	f.Add(fuzzDatagrams(sflowDatagram(1, sflowSample{format: 1, rate: 10})))                                                                           // a sample with no packet header
	f.Add(fuzzDatagrams(sflowDatagram(1, sflowSample{format: 1, rate: 0, in: 3, header: tFrame, headerProto: 1, frameLen: tFrameLen})))                // sampling 0
	f.Add(fuzzDatagrams(sflowDatagram(1, sflowSample{format: 1, rate: 0xffffffff, in: 3, header: tFrame, headerProto: 11, frameLen: tFrameLen})))      // 2^32-1, a header of IPv4
	f.Add(fuzzDatagrams(sflowDatagram(1, sflowSample{format: 3, rate: 10, header: tFrame, headerProto: 1, frameLen: tFrameLen, records: 0xffffffff}))) // 2^32-1 records
	f.Add(fuzzDatagrams(whole[:150]))                                                                                                                  // cut
	f.Add(append([]byte{1, 0, 0}, append([]byte{6, 0, 0}, whole...)...))                                                                               // an empty datagram from tExporter2, then one from an unknown exporter, 3 s earlier
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTelemetry(t, data, TelemetrySFlow) })
}

// FuzzTelemetryNetFlow fuzzes sequences of NetFlow v5 and v9 and IPFIX
// datagrams, as a NetFlow socket takes them.
func FuzzTelemetryNetFlow(f *testing.F) {
	exportMs := uint64(tExport.UnixMilli())
	udp := flow{src: tSrc, dst: tDst, sport: 53, dport: 40000, proto: ProtoUDP, in: 3, out: 7, packets: 10, bytes: 1000}
	v5 := udp
	v5.start, v5.end = 90_000, 95_000
	f.Add(fuzzDatagrams(netflow5(0, 100_000, 1<<14|100, v5, v5), netflow5(5, 101_000, 0, v5))) // v5, sampled, then 3 flows lost

	v9 := udp
	v9.start, v9.end = 189_000, 199_000
	r9 := record(v9Fields, v9)
	f.Add(fuzzDatagrams( // v9: data before its template; template, options template, options, data; data after a datagram lost
		netflow9(0, 199_000, dataSet(256, r9)),
		netflow9(1, 200_000, templateSet(0, 256, v9Fields...), v9OptionsTemplate(257, []field{{1, 4}}, []field{{34, 4}, {35, 1}}),
			dataSet(257, wire{}.u32(0).u32(64).u8(2)), dataSet(256, r9, r9)),
		netflow9(3, 201_000, dataSet(256, r9))))

	ms := udp
	ms.start, ms.end = exportMs-12_000, exportMs-2000
	up := flow{src: tSrc6, dst: tDst6, sport: 123, dport: 5000, proto: ProtoUDP, in: 3, packets: 2, bytes: 160, start: 3_590_000, end: 3_596_000}
	sampled := ms
	sampled.sampling = 10
	f.Add(fuzzDatagrams( // IPFIX: times in ms and in uptime from the boot that options give, sampling from options and in records
		ipfix(0, templateSet(2, 256, ipfixMilli...), templateSet(2, 257, ipfixUptime...),
			ipfixOptionsTemplate(258, []field{{149, 4}}, []field{{305, 4}, {306, 4}, {160, 8}}),
			dataSet(258, wire{}.u32(7).u32(1).u32(99).u64(exportMs-3_600_000)),
			dataSet(256, record(ipfixMilli, ms)), dataSet(257, record(ipfixUptime, up))),
		ipfix(3, templateSet(2, 259, ipfixSampled...), dataSet(259, record(ipfixSampled, sampled))),
		ipfix(10, dataSet(259, record(ipfixSampled, sampled)))))

	odd := []field{{8, 4}, {999, 3}, {0x8000 | 42, 4}, {12, 4}, {998, 0xffff}}
	f.Add(fuzzDatagrams(ipfix(0, templateSet(2, 256, odd...), // unknown fields, enterprise and variable-length ones
		dataSet(256, append(record(odd[:4], udp), 5, 'h', 'e', 'l', 'l', 'o')))))
	f.Add(fuzzDatagrams(ipfix(0, templateSet(2, 256, field{8, 0}, field{12, 0}), dataSet(256, wire{1, 2, 3, 4})))) // records of no length
	var flood [][]byte
	for i := range 10 {
		flood = append(flood, ipfix(uint32(i), templateSet(2, 256+uint16(i), ipfixMilli...)))
	}
	f.Add(fuzzDatagrams(append(flood, ipfix(0, dataSet(265, record(ipfixMilli, ms))))...)) // a template flood, then data of a refused one
	bad := ms
	bad.start, bad.end = exportMs, exportMs+86_400_000
	f.Add(fuzzDatagrams(ipfix(0, templateSet(2, 256, ipfixSampled...), dataSet(256, record(ipfixSampled, bad))))) // ends a day after its export, sampling 0
	f.Add(fuzzDatagrams(netflow5(0, 100_000, 0, v5)[:60]))                                                        // cut
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTelemetry(t, data, TelemetryNetFlow9) })
}
