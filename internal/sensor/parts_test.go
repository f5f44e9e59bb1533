package sensor

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

// TestPartsOfRegionsReadAgain reads, with two workers that send every
// record of a region as a part of its own, a capture over 2 MiB whose
// payloads look like records, so that the second region's reader takes a
// payload for its first record and the region is read again: its parts
// must be dropped, and the run's alerts, warnings and counters (frames
// decoded, packets examined) must be those of one worker, which reads the
// file from end to end. (A region skipped, after its file ended with an
// error in the region before, has records only when a read of the file
// failed, which a test cannot make happen.)
func TestPartsOfRegionsReadAgain(t *testing.T) {
	lured := partsCapture(t, 12000)
	path := filepath.Join(t.TempDir(), "capture.pcap")
	if err := os.WriteFile(path, lured, 0o644); err != nil {
		t.Fatal(err)
	}
	if !rereads(t, path) {
		t.Fatal("no region was read again: the case tests nothing")
	}
	one := partsRun(t, path, 1, 0)
	if two := partsRun(t, path, 2, 1); two != one {
		t.Fatalf("two workers, a part per record:\n%s\none worker:\n%s", two, one)
	}
}

// partsCapture returns a classic pcap of n echo requests to one server,
// 1 ms apart, each from another source, whose payloads look like records
// (pcaptest.FakeRecords).
func partsCapture(t *testing.T, n int) []byte {
	t.Helper()
	be := binary.BigEndian
	fake := pcaptest.FakeRecords()
	start := time.Date(2024, 5, 6, 12, 0, 0, 0, time.UTC)
	recs := make([]pcaptest.Record, n)
	for i := range recs {
		frame := make([]byte, 14+20+8, 14+20+8+len(fake))
		be.PutUint16(frame[12:], 0x0800)
		ip := frame[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		be.PutUint16(ip[2:], uint16(20+8+len(fake)))
		copy(ip[12:], []byte{203, 0, byte(113 + i/60000), byte(i % 250)})
		ip[14] = byte(i / 250 % 256)
		copy(ip[16:], []byte{198, 51, 100, 77})
		udp := ip[20:]
		be.PutUint16(udp, uint16(20000+i%40000))
		be.PutUint16(udp[2:], 7)
		be.PutUint16(udp[4:], uint16(8+len(fake)))
		frame = append(frame, fake...)
		recs[i] = pcaptest.Record{TS: start.Add(time.Duration(i) * time.Millisecond), Data: frame, Wire: len(frame)}
	}
	return pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs)
}

// rereads reports whether a region of the file at path guesses where its
// first record starts wrong, as Check finds once the region before it is
// read.
func rereads(t *testing.T, path string) bool {
	t.Helper()
	sp := splitFile(t, path)
	var f capture.Frame
	found := false
	for {
		reg, err := sp.Next()
		if err != nil {
			return found
		}
		for reg.ReadFrame(&f) == nil {
		}
		reg.Close()
		if v, _ := sp.Check(reg); v == capture.Reread {
			found = true
			reg = sp.Reread(reg)
			for reg.ReadFrame(&f) == nil {
			}
			reg.Close()
			sp.Check(reg)
		}
	}
}

// partsRun runs the sensor on the file at path with workers workers, parts
// of part records (0: the default), and returns its alerts, warnings and
// the frames its decoders counted.
func partsRun(t *testing.T, path string, workers, part int) string {
	t.Helper()
	var lines bytes.Buffer
	eng, err := detect.New(detect.DefaultConfig(), lineWriter{&lines})
	if err != nil {
		t.Fatal(err)
	}
	src, err := capture.OpenFiles([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	s, err := New(Config{Workers: workers, partRecords: part}, []capture.Source{src}, eng)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	return fmt.Sprintf("%swarnings %v\nframes %d, packets examined %d\n", lines.String(), s.Warnings(), st.Decoder.Frames, eng.Stats().Packets)
}

// splitFile opens the capture file at path, to be read in regions, until
// the test ends.
func splitFile(t *testing.T, path string) *capture.Splitter {
	t.Helper()
	src, err := capture.OpenFiles([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	sp, ok := src.Split()
	if !ok {
		t.Fatalf("%s was not split", path)
	}
	return sp
}
