// Package pcaptest builds capture files in memory for tests: classic pcap
// in either byte order and timestamp resolution, pcapng sections written
// by pcapgo or block by block (to damage any field), and gzip.
//
// Every builder fails the test it is given rather than return an error.
package pcaptest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/internal/annotated"
)

// Record is one packet a test writes into a capture.
type Record struct {
	TS    time.Time
	Data  []byte
	Wire  int // length on the wire
	Iface int // pcapng interface
}

func (r Record) captureInfo() gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: r.TS, CaptureLength: len(r.Data), Length: r.Wire, InterfaceIndex: r.Iface}
}

// Pcap writes recs as a classic little-endian pcap, with pcapgo, in
// nanoseconds if nanos and microseconds otherwise. The file header is 24
// bytes, and each record's header 16.
func Pcap(t testing.TB, nanos bool, lt layers.LinkType, recs []Record) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if nanos {
		w = pcapgo.NewWriterNanos(&b)
	}
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WritePacket(r.captureInfo(), r.Data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// PcapBigEndian writes recs as a classic big-endian pcap, which pcapgo
// cannot, with a snap length of 262144.
func PcapBigEndian(nanos bool, lt layers.LinkType, recs []Record) []byte {
	be := binary.BigEndian
	magic, div := uint32(0xa1b2c3d4), int64(time.Microsecond)
	if nanos {
		magic, div = 0xa1b23c4d, 1
	}
	b := be.AppendUint32(nil, magic)
	b = be.AppendUint16(b, 2) // version 2.4
	b = be.AppendUint16(b, 4)
	b = be.AppendUint32(b, 0)      // time zone offset
	b = be.AppendUint32(b, 0)      // timestamp accuracy
	b = be.AppendUint32(b, 262144) // snap length
	b = be.AppendUint32(b, uint32(lt))
	for _, r := range recs {
		b = be.AppendUint32(b, uint32(r.TS.Unix()))
		b = be.AppendUint32(b, uint32(int64(r.TS.Nanosecond())/div))
		b = be.AppendUint32(b, uint32(len(r.Data)))
		b = be.AppendUint32(b, uint32(r.Wire))
		b = append(b, r.Data...)
	}
	return b
}

// Pcapng writes recs as a pcapng section with one interface per link
// type, with pcapgo; its timestamps are in nanoseconds.
func Pcapng(t testing.TB, recs []Record, lts ...layers.LinkType) []byte {
	t.Helper()
	var b bytes.Buffer
	intf := func(i int) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: fmt.Sprint("if", i), LinkType: lts[i], TimestampResolution: 9}
	}
	w, err := pcapgo.NewNgWriterInterface(&b, intf(0), pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(lts); i++ {
		if _, err := w.AddInterface(intf(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range recs {
		if err := w.WritePacket(r.captureInfo(), r.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Gzip compresses b.
func Gzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// WriteFile writes b to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// NgBlocks writes pcapng blocks by hand, little-endian, so that a test can
// damage any field and know every block's offset. B is the file so far;
// Blocks holds the offset of each block written.
type NgBlocks struct {
	T      testing.TB
	B      []byte
	Blocks []int
}

// NgTime is the epoch of the timestamps EPB writes.
var NgTime = time.Date(2024, 5, 6, 12, 53, 20, 0, time.UTC)

// Block appends a block of type typ around body (padded to 4 bytes), with
// its length at both ends.
func (w *NgBlocks) Block(typ uint32, body []byte) *NgBlocks {
	le := binary.LittleEndian
	body = append(slices.Clone(body), make([]byte, (4-len(body)%4)%4)...)
	w.Blocks = append(w.Blocks, len(w.B))
	w.B = le.AppendUint32(w.B, typ)
	w.B = le.AppendUint32(w.B, uint32(12+len(body)))
	w.B = append(w.B, body...)
	w.B = le.AppendUint32(w.B, uint32(12+len(body)))
	return w
}

// SHB appends a section header block (28 bytes): version 1.0, no options.
func (w *NgBlocks) SHB() *NgBlocks {
	return w.Block(0x0a0d0d0a, annotated.Hex(w.T, `
		4d 3c 2b 1a              // byte-order magic
		01 00 00 00              // version 1.0
		ff ff ff ff ff ff ff ff  // section length: unknown`))
}

// IDB appends an interface description block (20 bytes): microsecond
// timestamps (the default), snap length 262144.
func (w *NgBlocks) IDB(lt layers.LinkType) *NgBlocks {
	b := binary.LittleEndian.AppendUint16(nil, uint16(lt))
	return w.Block(1, append(b, annotated.Hex(w.T, `
		00 00        // reserved
		00 00 04 00  // snap length 262144`)...))
}

// EPB appends an enhanced packet block (32 bytes and the data, padded) on
// interface iface, at us microseconds past NgTime.
func (w *NgBlocks) EPB(iface uint32, us uint64, data []byte) *NgBlocks {
	le := binary.LittleEndian
	us += uint64(NgTime.UnixMicro())
	b := le.AppendUint32(nil, iface)
	b = le.AppendUint32(b, uint32(us>>32))
	b = le.AppendUint32(b, uint32(us))
	b = le.AppendUint32(b, uint32(len(data))) // captured length
	b = le.AppendUint32(b, uint32(len(data))) // wire length
	return w.Block(6, append(b, data...))
}

// FakeRecords returns a payload that holds a chain of ten plausible
// little-endian record headers (more than a resync needs), to lure a
// reader that looks for where records start in the middle of a file.
func FakeRecords() []byte {
	var b []byte
	for range 10 {
		b = binary.LittleEndian.AppendUint32(b, 1715000000) // seconds
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, 4) // 4 bytes of data
		b = binary.LittleEndian.AppendUint32(b, 4)
		b = append(b, 1, 2, 3, 4)
	}
	return b
}
