package capture

import (
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// benchDatagrams is a DatagramSource that plays the same datagrams over
// and over, each stamped a millisecond after the one before, as a live
// collector would receive them.
type benchDatagrams struct {
	dgs []Datagram
	i   int
	now time.Time
}

func (s *benchDatagrams) ReadDatagram(d *Datagram) error {
	*d = s.dgs[s.i%len(s.dgs)]
	s.i++
	s.now = s.now.Add(time.Millisecond)
	d.Timestamp = s.now
	return nil
}

func (s *benchDatagrams) Close() error { return nil }

// loadDatagrams reads the datagrams of one of the real exporters' captures
// in testdata/telemetry (see its generate.sh).
func loadDatagrams(tb testing.TB, name string) []Datagram {
	tb.Helper()
	src, err := OpenFiles([]string{filepath.Join("testdata", "telemetry", name)}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	in := NewCapturedDatagrams(src)
	defer in.Close()
	var dgs []Datagram
	for {
		var d Datagram
		err := in.ReadDatagram(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		d.Data = append([]byte(nil), d.Data...)
		dgs = append(dgs, d)
	}
	if len(dgs) == 0 {
		tb.Fatalf("%s: no datagrams", name)
	}
	return dgs
}

// BenchmarkTelemetry decodes real exporters' datagrams as a live collector
// does (ReadFrame, then the frame decoded to a Packet as detection gets
// it): one op is one sFlow sample or one flow record.
func BenchmarkTelemetry(b *testing.B) {
	for _, name := range []string{"pmacct-sflow.pcap", "pmacct-sflow-mixed.pcap", "softflowd-ipfix.pcap", "softflowd-ipfix-mixed.pcap", "softflowd-v9.pcap"} {
		b.Run(name, func(b *testing.B) {
			dgs := loadDatagrams(b, name)
			tel, err := NewTelemetry(TelemetryConfig{AllowUnknown: true}, &benchDatagrams{dgs: dgs, now: time.Unix(1_700_000_000, 0)})
			if err != nil {
				b.Fatal(err)
			}
			dec := NewDecoder()
			var f Frame
			var p Packet
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := tel.ReadFrame(&f); err != nil {
					b.Fatal(err)
				}
				dec.Decode(&f, &p)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
