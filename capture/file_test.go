package capture_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/annotated"
	"github.com/echowatch/echowatch/internal/corpus"
)

// hexBytes reads test bytes written as annotated hex.
var hexBytes = annotated.Hex

// render writes a frame as one comparable line.
func render(f *capture.Frame) string {
	return fmt.Sprintf("%s cap=%d len=%d lt=%d if=%d %x",
		f.Timestamp.Format(time.RFC3339Nano), f.CaptureLength, f.Length, f.LinkType, f.Interface, f.Data)
}

// readEvents reads src to io.EOF and returns each frame rendered, and each
// error as "error: " and its message.
func readEvents(t testing.TB, src capture.Source) []string {
	t.Helper()
	var out []string
	var f capture.Frame
	for range 1_000_000 {
		err := src.ReadFrame(&f)
		if err == io.EOF {
			return out
		}
		if err != nil {
			out = append(out, "error: "+err.Error())
			continue
		}
		if f.CaptureLength != len(f.Data) {
			t.Errorf("CaptureLength %d, len(Data) %d", f.CaptureLength, len(f.Data))
		}
		out = append(out, render(&f))
	}
	t.Fatal("no io.EOF after a million reads")
	return nil
}

func checkEvents(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("read:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// headerCases are minimal files, one per header variant, each holding one
// packet at 2024-05-06T12:53:20 UTC plus a fraction of a second.
func headerCases() []struct{ name, hex, want string } {
	return []struct{ name, hex, want string }{{
		name: "pcap little-endian microseconds",
		hex: `
			d4 c3 b2 a1  // magic: microseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			ff ff 00 00  // snap length 65535
			01 00 00 00  // link type 1, Ethernet
			c0 d2 38 66  // seconds 1715000000
			40 e2 01 00  // microseconds 123456
			04 00 00 00  // captured length 4
			3c 00 00 00  // wire length 60
			de ad be ef  // data`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=60 lt=1 if=0 deadbeef",
	}, {
		name: "pcap big-endian microseconds",
		hex: `
			a1 b2 c3 d4  // magic: microseconds, big-endian
			00 02 00 04  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			00 00 ff ff  // snap length 65535
			00 00 00 65  // link type 101, raw IP
			66 38 d2 c0  // seconds 1715000000
			00 01 e2 40  // microseconds 123456
			00 00 00 04  // captured length 4
			00 00 00 04  // wire length 4
			45 00 00 14  // data`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=4 lt=101 if=0 45000014",
	}, {
		name: "pcap little-endian nanoseconds",
		hex: `
			4d 3c b2 a1  // magic: nanoseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			00 00 04 00  // snap length 262144
			e4 00 00 00  // link type 228, IPv4
			c0 d2 38 66  // seconds 1715000000
			15 cd 5b 07  // nanoseconds 123456789
			02 00 00 00  // captured length 2
			02 00 00 00  // wire length 2
			45 00        // data`,
		want: "2024-05-06T12:53:20.123456789Z cap=2 len=2 lt=228 if=0 4500",
	}, {
		name: "pcap big-endian nanoseconds",
		hex: `
			a1 b2 3c 4d  // magic: nanoseconds, big-endian
			00 02 00 04  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			00 04 00 00  // snap length 262144
			00 00 00 71  // link type 113, Linux SLL
			66 38 d2 c0  // seconds 1715000000
			07 5b cd 15  // nanoseconds 123456789
			00 00 00 04  // captured length 4
			00 00 05 ea  // wire length 1514
			ca fe f0 0d  // data`,
		want: "2024-05-06T12:53:20.123456789Z cap=4 len=1514 lt=113 if=0 cafef00d",
	}, {
		name: "pcapng little-endian",
		hex: `
			0a 0d 0d 0a  // block type: section header
			1c 00 00 00  // block length 28
			4d 3c 2b 1a  // byte-order magic, little-endian
			01 00 00 00  // version 1.0
			ff ff ff ff ff ff ff ff  // section length: unknown
			1c 00 00 00  // block length
			01 00 00 00  // block type: interface description
			14 00 00 00  // block length 20
			01 00 00 00  // link type 1, Ethernet; reserved
			00 00 00 00  // snap length: none
			14 00 00 00  // block length
			06 00 00 00  // block type: enhanced packet
			24 00 00 00  // block length 36
			00 00 00 00  // interface 0
			c8 17 06 00  // timestamp, high word: microseconds (the default
			40 12 cc 8d  // resolution) since 1970, 1715000000123456
			04 00 00 00  // captured length 4
			3c 00 00 00  // wire length 60
			de ad be ef  // data
			24 00 00 00  // block length`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=60 lt=1 if=0 deadbeef",
	}, {
		name: "pcapng big-endian",
		hex: `
			0a 0d 0d 0a  // block type: section header
			00 00 00 1c  // block length 28
			1a 2b 3c 4d  // byte-order magic, big-endian
			00 01 00 00  // version 1.0
			ff ff ff ff ff ff ff ff  // section length: unknown
			00 00 00 1c  // block length
			00 00 00 01  // block type: interface description
			00 00 00 14  // block length 20
			00 71 00 00  // link type 113, Linux SLL; reserved
			00 00 00 00  // snap length: none
			00 00 00 14  // block length
			00 00 00 06  // block type: enhanced packet
			00 00 00 24  // block length 36
			00 00 00 00  // interface 0
			00 06 17 c8  // timestamp, microseconds since 1970,
			8d cc 12 40  // 1715000000123456
			00 00 00 04  // captured length 4
			00 00 00 04  // wire length 4
			ca fe f0 0d  // data
			00 00 00 24  // block length`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=4 lt=113 if=0 cafef00d",
	}, {
		name: "pcap record longer captured than on the wire, as tcpdump reads it",
		hex: `
			d4 c3 b2 a1  // magic: microseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			ff ff 00 00  // snap length 65535
			01 00 00 00  // link type 1, Ethernet
			c0 d2 38 66  // seconds 1715000000
			40 e2 01 00  // microseconds 123456
			04 00 00 00  // captured length 4
			02 00 00 00  // wire length 2: taken as 4
			de ad be ef  // data
			c0 d2 38 66  // the next record: seconds 1715000000
			41 e2 01 00  // microseconds 123457
			01 00 00 00  // captured length 1
			01 00 00 00  // wire length 1
			01           // data`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=4 lt=1 if=0 deadbeef\n" +
			"2024-05-06T12:53:20.123457Z cap=1 len=1 lt=1 if=0 01",
	}, {
		name: "pcap cut in the data of a record longer captured than on the wire",
		hex: `
			d4 c3 b2 a1  // magic: microseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			ff ff 00 00  // snap length 65535
			01 00 00 00  // link type 1, Ethernet
			c0 d2 38 66  // seconds 1715000000
			40 e2 01 00  // microseconds 123456
			04 00 00 00  // captured length 4
			02 00 00 00  // wire length 2
			de ad        // data, cut`,
		want: "error: capture: FILE: capture file is truncated after 0 packets",
	}}
}

func TestReadHeaderVariants(t *testing.T) {
	for _, tc := range headerCases() {
		t.Run(tc.name, func(t *testing.T) {
			data := hexBytes(t, tc.hex)
			for _, gz := range []bool{false, true} {
				name := "capture.bin" // the name says nothing of the format
				if gz {
					data, name = gzipBytes(t, data), "capture.pcap"
				}
				path := writeFile(t, t.TempDir(), name, data)
				src, err := capture.OpenFiles([]string{path}, nil)
				if err != nil {
					t.Fatal(err)
				}
				want := strings.ReplaceAll(tc.want, "FILE", path)
				checkEvents(t, readEvents(t, src), strings.Split(want, "\n"))
				src.Close()
			}
		})
	}
}

// rec is one packet a test writes into a capture.
type rec struct {
	ts    time.Time
	data  []byte
	wire  int // length on the wire
	iface int // pcapng interface
}

// testRecs are three packets: whole, cut by a snap length, and one byte.
func testRecs() []rec {
	base := time.Date(2024, 5, 6, 12, 53, 20, 123456789, time.UTC)
	return []rec{
		{ts: base, data: bytes.Repeat([]byte{0xaa}, 42), wire: 42, iface: 0},
		{ts: base.Add(1500*time.Millisecond + 1), data: bytes.Repeat([]byte{0x55}, 60), wire: 1514, iface: 1},
		{ts: base.Add(3 * time.Second), data: []byte{0x01}, wire: 1, iface: 0},
	}
}

// wantFrames renders recs as ReadFrame should return them, with timestamps
// at the file's resolution and link types by interface.
func wantFrames(recs []rec, res time.Duration, lts ...layers.LinkType) []string {
	var out []string
	for _, r := range recs {
		iface := r.iface
		if len(lts) == 1 { // a classic pcap has one link type and no interfaces
			iface = 0
		}
		f := capture.Frame{
			Data: r.data, Timestamp: r.ts.Truncate(res), CaptureLength: len(r.data),
			Length: r.wire, LinkType: lts[iface], Interface: iface,
		}
		out = append(out, render(&f))
	}
	return out
}

func ci(r rec) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: r.wire, InterfaceIndex: r.iface}
}

// pcapLE writes recs as a classic little-endian pcap, with pcapgo.
func pcapLE(t testing.TB, nanos bool, lt layers.LinkType, recs []rec) []byte {
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
		if err := w.WritePacket(ci(r), r.data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// pcapBE writes recs as a classic big-endian pcap, which pcapgo cannot.
func pcapBE(nanos bool, lt layers.LinkType, recs []rec) []byte {
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
		b = be.AppendUint32(b, uint32(r.ts.Unix()))
		b = be.AppendUint32(b, uint32(int64(r.ts.Nanosecond())/div))
		b = be.AppendUint32(b, uint32(len(r.data)))
		b = be.AppendUint32(b, uint32(r.wire))
		b = append(b, r.data...)
	}
	return b
}

// pcapng writes recs as a pcapng section with one interface per link
// type, with pcapgo; its timestamps are in nanoseconds.
func pcapng(t testing.TB, recs []rec, lts ...layers.LinkType) []byte {
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
		if err := w.WritePacket(ci(r), r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
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

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenFilesFormats(t *testing.T) {
	recs := testRecs()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	twoSections := append(pcapng(t, recs[:2], eth, sll), pcapng(t, recs[2:], sll)...)
	for _, tc := range []struct {
		name string
		file string // the name of the file: never a hint of its format
		data []byte
		want []string
	}{
		{"pcap little-endian µs", "a.pcapng", pcapLE(t, false, eth, recs), wantFrames(recs, time.Microsecond, eth)},
		{"pcap little-endian ns", "a.pcap", pcapLE(t, true, sll, recs), wantFrames(recs, 1, sll)},
		{"pcap big-endian µs", "a.pcap", pcapBE(false, layers.LinkTypeRaw, recs), wantFrames(recs, time.Microsecond, layers.LinkTypeRaw)},
		{"pcap big-endian ns", "a.pcap", pcapBE(true, layers.LinkTypeIPv4, recs), wantFrames(recs, 1, layers.LinkTypeIPv4)},
		{"pcapng, Ethernet and Linux SLL interfaces", "a.pcap", pcapng(t, recs, eth, sll), wantFrames(recs, 1, eth, sll)},
		{"pcapng, interface 0 is Linux SLL in the second section", "a.pcapng", twoSections, []string{
			wantFrames(recs, 1, eth, sll)[0], wantFrames(recs, 1, eth, sll)[1], wantFrames(recs[2:], 1, sll, sll)[0],
		}},
		{"gzip pcap little-endian", "a.pcap", gzipBytes(t, pcapLE(t, true, eth, recs)), wantFrames(recs, 1, eth)},
		{"gzip pcap big-endian", "a.txt", gzipBytes(t, pcapBE(false, eth, recs)), wantFrames(recs, time.Microsecond, eth)},
		{"gzip pcapng", "a.pcapng", gzipBytes(t, pcapng(t, recs, eth, sll)), wantFrames(recs, 1, eth, sll)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), tc.file, tc.data)
			src, err := capture.OpenFiles([]string{path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			checkEvents(t, readEvents(t, src), tc.want)
			want := []capture.FileStats{{Name: path, Frames: 3, Bytes: 42 + 60 + 1}}
			got := src.FileStats()
			for i := range got {
				// TestFileStatsPosition checks them.
				got[i].First, got[i].Size, got[i].Offset = time.Time{}, 0, 0
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("FileStats() = %+v, want %+v", got, want)
			}
		})
	}
}

func TestOpenFilesTimeline(t *testing.T) {
	recs := testRecs()
	dir := t.TempDir()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	aData := pcapLE(t, false, eth, recs[:2])
	a := writeFile(t, dir, "a.pcap", aData)
	c := writeFile(t, dir, "c.pcap.gz", gzipBytes(t, pcapBE(true, sll, recs[2:])))
	stdin := bytes.NewReader(pcapng(t, recs[1:], eth, sll))

	src, err := capture.OpenFiles([]string{a, "-", c}, stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var want []string
	want = append(want, wantFrames(recs[:2], time.Microsecond, eth)...)
	want = append(want, wantFrames(recs[1:], 1, eth, sll)...)
	want = append(want, wantFrames(recs[2:], 1, sll)...)
	checkEvents(t, readEvents(t, src), want)

	wantStats := []capture.FileStats{
		{Name: a, Frames: 2, Bytes: 42 + 60, First: recs[0].ts.Truncate(time.Microsecond),
			Size: uint64(len(aData)), Offset: uint64(len(aData))},
		{Name: "-", Frames: 2, Bytes: 60 + 1, First: recs[1].ts},
		{Name: c, Frames: 1, Bytes: 1, First: recs[2].ts},
	}
	if got := src.FileStats(); !reflect.DeepEqual(got, wantStats) {
		t.Errorf("FileStats() = %+v, want %+v", got, wantStats)
	}
	// The end is sticky.
	var f capture.Frame
	if err := src.ReadFrame(&f); err != io.EOF {
		t.Errorf("ReadFrame after the end = %v, want io.EOF", err)
	}
}

// TestFileStatsPosition checks what FileStats says of where the reading
// is: the first frame's time, and how far into each file the frames read
// reach, against its size on disk, where the size says how much is left:
// exactly for classic pcap, about for pcapng (the blocks of the frames
// only), not at all for a compressed file or standard input.
func TestFileStatsPosition(t *testing.T) {
	recs := testRecs()
	eth := layers.LinkTypeEthernet
	pcap, ng := pcapLE(t, true, eth, recs), pcapng(t, recs, eth, eth)
	dir := t.TempDir()
	a, b := writeFile(t, dir, "a.pcap", pcap), writeFile(t, dir, "b.pcapng", ng)
	c := writeFile(t, dir, "c.pcap.gz", gzipBytes(t, pcap))
	src, err := capture.OpenFiles([]string{a, b, c, "-"}, bytes.NewReader(pcap))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pcapSize, ngSize := uint64(len(pcap)), uint64(len(ng))
	first := recs[0].ts

	var f capture.Frame
	if err := src.ReadFrame(&f); err != nil {
		t.Fatal(err)
	}
	want := []capture.FileStats{
		{Name: a, Frames: 1, Bytes: 42, First: first, Size: pcapSize, Offset: 24 + 16 + 42},
		{Name: b, Size: ngSize}, // sized before it is reached
		{Name: c},
		{Name: "-"},
	}
	if got := src.FileStats(); !reflect.DeepEqual(got, want) {
		t.Errorf("after a frame:\n got %+v\nwant %+v", got, want)
	}

	readEvents(t, src)
	want = []capture.FileStats{
		{Name: a, Frames: 3, Bytes: 103, First: first, Size: pcapSize, Offset: pcapSize},
		{Name: b, Frames: 3, Bytes: 103, First: first, Size: ngSize, Offset: 3*34 + 103},
		{Name: c, Frames: 3, Bytes: 103, First: first},
		{Name: "-", Frames: 3, Bytes: 103, First: first},
	}
	if got := src.FileStats(); !reflect.DeepEqual(got, want) {
		t.Errorf("at the end:\n got %+v\nwant %+v", got, want)
	}
}

func TestOpenFilesRefuses(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.pcap", pcapLE(t, false, layers.LinkTypeEthernet, testRecs()))
	pcapHeader := pcapLE(t, false, layers.LinkTypeEthernet, nil)
	oldVersion := slices.Clone(pcapHeader)
	oldVersion[6] = 3 // version 2.3: older than pcapgo reads
	file := func(name string, b []byte) string { return writeFile(t, dir, name, b) }

	for _, tc := range []struct {
		name  string
		paths []string
		want  string
		is    error // a sentinel the error wraps, if any
	}{
		{"missing file", []string{good, filepath.Join(dir, "x.pcap")},
			"capture: open " + dir + "/x.pcap: no such file or directory", fs.ErrNotExist},
		{"text file", []string{file("alerts.txt", []byte("2024-05-06 alert: echo flood\n"))},
			"capture: read " + dir + "/alerts.txt: not a pcap or pcapng file", capture.ErrNotCapture},
		{"empty file", []string{file("empty.pcap", nil)},
			"capture: read " + dir + "/empty.pcap: not a pcap or pcapng file (file is empty)", capture.ErrNotCapture},
		{"three bytes", []string{file("short.pcap", []byte{0xd4, 0xc3, 0xb2})},
			"capture: read " + dir + "/short.pcap: not a pcap or pcapng file", capture.ErrNotCapture},
		{"gzip of text", []string{file("alerts.pcap.gz", gzipBytes(t, []byte("not a capture")))},
			"capture: read " + dir + "/alerts.pcap.gz: not a pcap or pcapng file", capture.ErrNotCapture},
		{"gzip of nothing", []string{file("empty.pcap.gz", gzipBytes(t, nil))},
			"capture: read " + dir + "/empty.pcap.gz: not a pcap or pcapng file (file is empty)", capture.ErrNotCapture},
		{"gzip of gzip", []string{file("twice.gz", gzipBytes(t, gzipBytes(t, pcapHeader)))},
			"capture: read " + dir + "/twice.gz: not a pcap or pcapng file", capture.ErrNotCapture},
		{"bad gzip header", []string{file("bad.gz", []byte{0x1f, 0x8b, 0x09, 0, 0, 0, 0, 0, 0, 0})},
			"capture: read " + dir + "/bad.gz: gzip file header: gzip: invalid header", nil},
		{"gzip header cut", []string{file("cut.gz", []byte{0x1f, 0x8b, 0x08, 0x00})},
			"capture: read " + dir + "/cut.gz: gzip file header is truncated", nil},
		{"pcap header cut", []string{file("cut.pcap", pcapHeader[:10])},
			"capture: read " + dir + "/cut.pcap: pcap file header is truncated", nil},
		{"pcapng header cut", []string{file("cut.pcapng", pcapng(t, nil, layers.LinkTypeEthernet)[:20])},
			"capture: read " + dir + "/cut.pcapng: pcapng file header is truncated", nil},
		{"pcap version 2.3", []string{file("old.pcap", oldVersion)},
			"capture: read " + dir + "/old.pcap: pcap file header: Unknown minor version 3", nil},
		{"directory", []string{good, dir},
			"capture: read " + dir + ": is a directory", nil},
		{"stdin twice", []string{"-", good, "-"}, "capture: stdin (-) given more than once", nil},
		{"no file", nil, "capture: no capture file given", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := capture.OpenFiles(tc.paths, strings.NewReader(""))
			if err == nil {
				src.Close()
				t.Fatalf("OpenFiles(%q) succeeded", tc.paths)
			}
			if err.Error() != tc.want {
				t.Errorf("error %q\nwant  %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %v", err, tc.is)
			}
		})
	}
}

// Standard input is only checked when the timeline reaches it; the files
// after it are still read.
func TestStdinRefusedWhenReached(t *testing.T) {
	recs := testRecs()
	good := writeFile(t, t.TempDir(), "good.pcap", pcapLE(t, true, layers.LinkTypeEthernet, recs[:1]))
	src, err := capture.OpenFiles([]string{"-", good}, strings.NewReader("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	checkEvents(t, readEvents(t, src), []string{
		"error: capture: read stdin: not a pcap or pcapng file",
		wantFrames(recs[:1], 1, layers.LinkTypeEthernet)[0],
	})
	if err := src.FileStats()[0].Err; !errors.Is(err, capture.ErrNotCapture) {
		t.Errorf("FileStats()[0].Err = %v, want ErrNotCapture", err)
	}
}

func TestTruncated(t *testing.T) {
	recs := testRecs()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	pcap := pcapLE(t, true, eth, recs) // records at 24, 24+16+42=82, 82+16+60=158; ends at 175
	ng := pcapng(t, recs, eth, sll)
	ngOne := len(pcapng(t, recs[:1], eth, sll)) // end of the first packet block
	gzPcap := gzipBytes(t, pcap)                // the last 8 bytes are CRC and size
	frames := func(n int) []string { return wantFrames(recs[:n], 1, eth, sll) }
	pcapFrames := func(n int) []string { return wantFrames(recs[:n], 1, eth) }
	after := func(name string, n int) string {
		return fmt.Sprintf("error: capture: %s: capture file is truncated after %d packets", name, n)
	}

	for _, tc := range []struct {
		name string
		data []byte
		want func(name string) []string
	}{
		{"pcap cut in a record header", pcap[:82+10], func(name string) []string {
			return append(pcapFrames(1), after(name, 1))
		}},
		{"pcap cut in record data", pcap[:82+16+30], func(name string) []string {
			return append(pcapFrames(1), after(name, 1))
		}},
		{"pcap record header, then none of its data", pcap[:158+16], func(name string) []string {
			return append(pcapFrames(2), after(name, 2))
		}},
		{"pcap cut between records is a clean end", pcap[:158], func(string) []string {
			return pcapFrames(2)
		}},
		{"pcapng cut in a packet block", ng[:ngOne+20], func(name string) []string {
			return append(frames(1), after(name, 1))
		}},
		{"pcapng cut in the last block's trailer", ng[:len(ng)-2], func(name string) []string {
			return append(frames(2), after(name, 2))
		}},
		{"gzip cut in its trailer", gzPcap[:len(gzPcap)-4], func(name string) []string {
			return append(pcapFrames(3), after(name, 3))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cut := writeFile(t, dir, "cut", tc.data)
			next := writeFile(t, dir, "next.pcap", pcapLE(t, true, eth, recs[2:]))
			src, err := capture.OpenFiles([]string{cut, next}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			// The frames before the cut, the cut, then the next file.
			want := append(tc.want(cut), wantFrames(recs[2:], 1, eth)...)
			checkEvents(t, readEvents(t, src), want)

			st := src.FileStats()[0]
			if truncated := strings.HasPrefix(want[len(want)-2], "error:"); truncated != errors.Is(st.Err, capture.ErrTruncated) {
				t.Errorf("FileStats()[0].Err = %v, truncated %v", st.Err, truncated)
			}
		})
	}
}

// A named pipe, such as bash's <(zcat a.pcap.gz), can be read only once:
// OpenFiles must leave its bytes to ReadFrame, as for stdin.
func TestNamedPipe(t *testing.T) {
	mkfifo, err := exec.LookPath("mkfifo")
	if err != nil {
		t.Skip("no mkfifo:", err)
	}
	recs := testRecs()
	fifo := filepath.Join(t.TempDir(), "pipe")
	if out, err := exec.Command(mkfifo, fifo).CombinedOutput(); err != nil {
		t.Fatalf("mkfifo: %v: %s", err, out)
	}
	data := pcapLE(t, true, layers.LinkTypeEthernet, recs)
	wrote := make(chan error, 1)
	go func() { wrote <- os.WriteFile(fifo, data, 0) }()

	src, err := capture.OpenFiles([]string{fifo}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// Had OpenFiles read the header, the writer is gone and ReadFrame
	// waits for another forever.
	read := make(chan []string, 1)
	go func() { read <- readEvents(t, src) }()
	select {
	case got := <-read:
		checkEvents(t, got, wantFrames(recs, 1, layers.LinkTypeEthernet))
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFrame blocked on the pipe for 10 s")
	}
	if err := <-wrote; err != nil {
		t.Errorf("writing to the pipe: %v", err)
	}
}

// A record or block that cannot be right, with nothing readable after it,
// is damage to the end of the file, not a cut: the message names the file
// and where, nothing unbounded is allocated, and the timeline goes on.
func TestCorruptRecords(t *testing.T) {
	le := binary.LittleEndian
	recs := testRecs()
	pcap := pcapLE(t, false, layers.LinkTypeEthernet, recs[:1])
	record := func(b []byte, caplen, wire uint32, data []byte) []byte {
		b = le.AppendUint64(slices.Clone(b), 1715000000) // seconds, microseconds
		b = le.AppendUint32(b, caplen)
		b = le.AppendUint32(b, wire)
		return append(b, data...)
	}
	hugeSnaplen := slices.Clone(pcap)
	le.PutUint32(hugeSnaplen[16:], 0xffffffff)
	big := make([]byte, 300000)

	ng := pcapng(t, recs[:1], layers.LinkTypeEthernet)
	epb := func(iface, caplen uint32, data []byte) []byte {
		b := le.AppendUint32(slices.Clone(ng), 6) // enhanced packet block
		b = le.AppendUint32(b, 32+uint32(len(data)))
		b = le.AppendUint32(b, iface)
		b = le.AppendUint64(b, 0) // timestamp
		b = le.AppendUint32(b, caplen)
		b = le.AppendUint32(b, caplen)
		b = append(b, data...)
		return le.AppendUint32(b, 32+uint32(len(data)))
	}

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"pcap caplen 4 GiB", record(pcap, 0xffffffff, 0xffffffff, nil),
			"damaged record at offset 82: captured length 4294967295 is over 262144; skipped the last 16 bytes: no good record after it"},
		{"pcap caplen above the 256 KiB maximum despite the file's snap length", record(hugeSnaplen, 300000, 300000, big),
			"damaged record at offset 82: captured length 300000 is over 262144; skipped the last 300016 bytes: no good record after it"},
		{"pcapng record above 256 KiB", epb(0, 300000, big),
			fmt.Sprintf("damaged enhanced packet block at offset %d: captured length 300000 is over 262144; skipped the last 300032 bytes: no good block after it", len(ng))},
		{"pcapng packet on an undeclared interface", epb(5, 4, make([]byte, 4)),
			fmt.Sprintf("damaged enhanced packet block at offset %d: interface 5 is not declared (the section has 1); skipped the last 36 bytes: no good block after it", len(ng))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := writeFile(t, dir, "bad", tc.data)
			next := writeFile(t, dir, "next.pcap", pcapLE(t, true, layers.LinkTypeEthernet, recs[2:]))
			src, err := capture.OpenFiles([]string{bad, next}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			got := readEvents(t, src)
			want := "error: capture: " + bad + ": " + tc.want
			if len(got) != 3 || got[1] != want {
				t.Fatalf("read:\n\t%s\nwant the second line:\n\t%s", strings.Join(got, "\n\t"), want)
			}
			if st := src.FileStats()[0]; st.Err != nil || st.Damaged != 1 {
				t.Errorf("FileStats: Err %v, %d damaged: want no error (not a cut), 1", st.Err, st.Damaged)
			}
		})
	}
}

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A pcapng packet block that claims 4 GiB, from a stream that has them:
// pcapgo would read them all into memory. The reader refuses a block over
// 16 MiB, and skips the next 20 MiB of zeros, which hold no block, in
// bounded memory, to the packet after them.
func TestHugeRecordFromStream(t *testing.T) {
	le := binary.LittleEndian
	head := pcapng(t, nil, layers.LinkTypeEthernet)
	at := len(head)
	head = le.AppendUint32(head, 6)          // enhanced packet block
	head = le.AppendUint32(head, 0xfffffff0) // block length
	head = le.AppendUint32(head, 0)          // interface 0
	head = le.AppendUint64(head, 0)          // timestamp
	head = le.AppendUint32(head, 0xffffff00) // captured length
	head = le.AppendUint32(head, 0xffffff00) // wire length
	recs := testRecs()[:1]
	ng := pcapng(t, recs, layers.LinkTypeEthernet)
	next := ng[len(pcapng(t, nil, layers.LinkTypeEthernet)):] // its packet block
	const skip = 20 << 20

	src, err := capture.OpenFiles([]string{"-"}, io.MultiReader(bytes.NewReader(head), io.LimitReader(zeros{}, skip), bytes.NewReader(next)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := readEvents(t, src)
	runtime.ReadMemStats(&after)
	want := []string{fmt.Sprintf("error: capture: stdin: damaged enhanced packet block at offset %d: block length 4294967280 is over 16 MiB; skipped %d bytes to the next block", at, 28+skip),
		wantFrames(recs, 1, layers.LinkTypeEthernet)[0]}
	checkEvents(t, got, want)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("allocated %d MiB to skip 20 MiB", n>>20)
	}
}

// openFDs counts this process's open file descriptors, on Linux.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(fds)
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	recs := testRecs()
	a := writeFile(t, dir, "a.pcap", pcapLE(t, false, layers.LinkTypeEthernet, recs))
	b := writeFile(t, dir, "b.pcap", pcapLE(t, false, layers.LinkTypeEthernet, recs))

	fds := openFDs(t)
	src, err := capture.OpenFiles([]string{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := openFDs(t); n != fds {
		t.Errorf("after OpenFiles: %d open files, want %d (checking closes them)", n, fds)
	}
	var f capture.Frame
	if err := src.ReadFrame(&f); err != nil {
		t.Fatal(err)
	}
	if n := openFDs(t); n != fds+1 {
		t.Errorf("while reading: %d open files, want %d", n, fds+1)
	}
	for i := range 2 {
		if err := src.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	if n := openFDs(t); n != fds {
		t.Errorf("after Close: %d open files, want %d", n, fds)
	}
	if err := src.ReadFrame(&f); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadFrame after Close = %v, want os.ErrClosed", err)
	}
}

// repeat is an endless stream of one byte sequence.
type repeat struct {
	b   []byte
	off int
}

func (r *repeat) Read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return len(p), nil
}

// Close may come from another goroutine while ReadFrame runs, as on a
// signal: reading then ends with os.ErrClosed, not a panic or a complaint
// about the file.
func TestCloseWhileReading(t *testing.T) {
	recs := manyRecs(20000)
	a := writeFile(t, t.TempDir(), "a.pcap", pcapLE(t, false, layers.LinkTypeEthernet, recs))
	// Then endless frames from stdin, so that the reads end only by Close.
	pcap := pcapLE(t, false, layers.LinkTypeEthernet, recs[:1])
	stdin := io.MultiReader(bytes.NewReader(pcap[:24]), &repeat{b: pcap[24:]})
	src, err := capture.OpenFiles([]string{a, "-"}, stdin)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		var f capture.Frame
		for n := 0; ; n++ {
			if n == 100 {
				close(started)
			}
			if err := src.ReadFrame(&f); err != nil {
				ended <- err
				return
			}
		}
	}()
	<-started
	if err := src.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-ended; !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadFrame ended with %v, want os.ErrClosed", err)
	}
	for _, st := range src.FileStats() {
		if st.Err != nil {
			t.Errorf("%s: Err = %v, want none", st.Name, st.Err)
		}
	}
}

// manyRecs is n Ethernet-sized packets of varying length, 1 ms apart.
func manyRecs(n int) []rec {
	base := time.Date(2024, 5, 6, 12, 53, 20, 0, time.UTC)
	data := bytes.Repeat([]byte{0x42}, 1514)
	recs := make([]rec, n)
	for i := range recs {
		l := 60 + (i*97)%(1514-60)
		recs[i] = rec{ts: base.Add(time.Duration(i) * time.Millisecond), data: data[:l], wire: l}
	}
	return recs
}

// Reading a frame allocates nothing once the reader is warm: the frame
// data lives in the reader's reused buffer.
func TestReadFrameAllocatesNothing(t *testing.T) {
	recs := manyRecs(3000)
	eth, sll2 := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2
	for _, tc := range []struct {
		name   string
		data   []byte
		allocs float64
	}{
		{"pcap", pcapLE(t, true, eth, recs), 0},
		{"pcap big-endian", pcapBE(false, eth, recs), 0},
		{"pcap Linux SLL2", pcapLE(t, true, sll2, recs), 0},
		{"pcapng", pcapng(t, recs, eth), 0},
		{"gzip pcap", gzipBytes(t, pcapLE(t, true, eth, recs)), 0},
		{"gzip pcapng", gzipBytes(t, pcapng(t, recs, eth)), 0},
		{"pcapng Linux SLL2", pcapng(t, recs, sll2), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "a", tc.data)
			src, err := capture.OpenFiles([]string{path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var f capture.Frame
			for range 100 { // open the file, fill the buffers
				if err := src.ReadFrame(&f); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(2000, func() {
				if err := src.ReadFrame(&f); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != tc.allocs {
				t.Errorf("%v allocations per frame, want %v", allocs, tc.allocs)
			}
		})
	}
}

func BenchmarkFileSource(b *testing.B) {
	recs := manyRecs(20000)
	var size int64
	for _, r := range recs {
		size += int64(len(r.data))
	}
	eth := layers.LinkTypeEthernet
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"pcap", pcapLE(b, true, eth, recs)},
		{"pcapng", pcapng(b, recs, eth)},
		{"pcap.gz", gzipBytes(b, pcapLE(b, true, eth, recs))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := writeFile(b, b.TempDir(), "a", bc.data)
			open := func() *capture.FileSource {
				src, err := capture.OpenFiles([]string{path}, nil)
				if err != nil {
					b.Fatal(err)
				}
				return src
			}
			src := open()
			defer func() { src.Close() }()
			var f capture.Frame
			b.SetBytes(size / int64(len(recs)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				err := src.ReadFrame(&f)
				if err == io.EOF {
					// OpenFiles's check of the file is not measured; its
					// open proper, on the first ReadFrame, is, spread over
					// the file's frames.
					b.StopTimer()
					src.Close()
					src = open()
					b.StartTimer()
					err = src.ReadFrame(&f)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzFileReader(f *testing.F) {
	le := binary.LittleEndian
	for _, tc := range headerCases() {
		f.Add(hexBytes(f, tc.hex)) // one minimal valid file per header variant
	}
	recs := testRecs()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	pcap := pcapLE(f, true, eth, recs)
	ng := pcapng(f, recs, eth, sll)
	f.Add(pcap)                    // pcap, 3 packets, one cut by the snap length
	f.Add(ng)                      // pcapng, two interfaces of different link types
	f.Add(gzipBytes(f, pcap))      // gzip pcap
	f.Add(gzipBytes(f, ng))        // gzip pcapng
	f.Add(pcap[:20])               // pcap header cut
	f.Add(pcap[:100])              // pcap cut in the second record
	f.Add(pcap[:158+16])           // pcap record header, then none of its data
	f.Add(ng[:len(ng)-3])          // pcapng cut in the last block
	f.Add(gzipBytes(f, pcap)[:60]) // gzip stream cut
	f.Add([]byte{})                // empty
	f.Add([]byte("GET / HTTP/1.1\r\n"))

	huge := le.AppendUint32(slices.Clone(pcap[:24]), 0) // pcap record with a 4 GiB caplen
	huge = le.AppendUint32(huge, 0)
	huge = le.AppendUint32(huge, 0xffffffff)
	f.Add(le.AppendUint32(huge, 0xffffffff))

	shb := pcapng(f, nil, eth)
	short := le.AppendUint32(slices.Clone(shb), 6) // pcapng block length 4: shorter than its header
	f.Add(le.AppendUint32(short, 4))
	epb := le.AppendUint32(slices.Clone(shb), 6) // pcapng packet whose caplen exceeds its block
	epb = le.AppendUint32(epb, 36)
	epb = le.AppendUint32(epb, 0)
	epb = le.AppendUint64(epb, 0)
	epb = le.AppendUint32(epb, 0x7fffffff)
	f.Add(le.AppendUint32(epb, 0x7fffffff))
	dsb := le.AppendUint32(slices.Clone(shb), 0x0a) // decryption secrets block, 4 GiB secrets
	dsb = le.AppendUint32(dsb, 32)
	dsb = le.AppendUint32(dsb, 0x544c534b)
	f.Add(le.AppendUint32(dsb, 0xffffffff))
	spb := le.AppendUint32(slices.Clone(shb), 3) // simple packet block
	spb = le.AppendUint32(spb, 20)
	spb = le.AppendUint32(spb, 4)
	spb = append(spb, 0xde, 0xad, 0xbe, 0xef)
	f.Add(le.AppendUint32(spb, 20))

	// Damage the reader skips: a block length of 0xfffffff0, a trailing
	// length that differs, a block of no known type, garbage between two
	// blocks; a pcap record of 4 GiB between good ones, zeroed records.
	ngBad := func(off int, v uint32) []byte {
		b := slices.Clone(ng)
		le.PutUint32(b[off:], v)
		return b
	}
	epb1 := len(pcapng(f, nil, eth, sll)) // the first packet block
	f.Add(ngBad(epb1+4, 0xfffffff0))
	f.Add(ngBad(len(pcapng(f, recs[:2], eth, sll))-4, 0x40))
	f.Add(ngBad(epb1, 0x46))
	f.Add(slices.Concat(ng[:epb1], bytes.Repeat([]byte{0x5a}, 13), ng[epb1:]))
	pcapBad := slices.Clone(pcap)
	le.PutUint32(pcapBad[82+8:], 0xffffffff)
	f.Add(pcapBad)
	pcapZeroed := slices.Clone(pcap)
	clear(pcapZeroed[82:158])
	f.Add(pcapZeroed)

	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := capture.OpenFiles([]string{"-"}, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err) // stdin is only checked when read
		}
		defer src.Close()
		var fr capture.Frame
		for range 1_000_000 {
			err := src.ReadFrame(&fr)
			if err == io.EOF {
				return
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "capture: ") || !strings.Contains(err.Error(), "stdin") {
					t.Errorf("error does not name the component and input: %v", err)
				}
				continue
			}
			if fr.CaptureLength != len(fr.Data) || fr.Length < fr.CaptureLength || len(fr.Data) > 262144 {
				t.Fatalf("bad frame: CaptureLength %d, Length %d, len(Data) %d", fr.CaptureLength, fr.Length, len(fr.Data))
			}
		}
		t.Fatal("no io.EOF after a million reads")
	})
}

// corpusResult is what reading one corpus file gave.
type corpusResult struct {
	frames  int
	err     error // the first error, nil for a clean read
	refused bool  // OpenFiles refused the file
}

// readCorpusFile reads one file to its end, failing the test if that takes
// longer than a generous timeout.
func readCorpusFile(t *testing.T, path string) corpusResult {
	t.Helper()
	done := make(chan corpusResult, 1)
	go func() {
		src, err := capture.OpenFiles([]string{path}, nil)
		if err != nil {
			done <- corpusResult{err: err, refused: true}
			return
		}
		defer src.Close()
		var r corpusResult
		var f capture.Frame
		for {
			err := src.ReadFrame(&f)
			if err == io.EOF {
				break
			}
			if err != nil {
				r.err = cmp.Or(r.err, err)
				continue
			}
			r.frames++
		}
		done <- r
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not read to its end after 30 s", path)
		return corpusResult{}
	}
}

// Every capture of the shared corpus is read or refused, without a panic or
// a hang, and the files we know give exactly what they hold.
func TestCorpus(t *testing.T) {
	root := corpus.Dir(t, "corpus")
	results := map[string]corpusResult{}
	var read, refused, truncated, failed int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Dir(path) == root { // README.md, MANIFEST.tsv
			return err
		}
		r := readCorpusFile(t, path)
		name, _ := filepath.Rel(root, path)
		results[name] = r
		switch {
		case r.refused:
			refused++
		case r.err == nil:
			read++
		case errors.Is(r.err, capture.ErrTruncated):
			truncated++
		default:
			failed++
		}
		if r.err != nil {
			t.Logf("%s: %d frames, %v", name, r.frames, r.err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files: %d read, %d refused, %d truncated, %d failed after some frames",
		len(results), read, refused, truncated, failed)

	// Files we know, with the frames they hold and how they end.
	for _, tc := range []struct {
		name   string
		frames int
		err    string // the error after them, "" for none; FILE is the path
	}{
		// Counts from `tcpdump -r FILE | wc -l` (through zcat for .gz).
		{"echo/spicy-wireshark__echo.pcap", 2, ""},
		{"echo/zeek__echo-connections.pcap.gz", 82582, ""},
		{"robust/pcapplusplus__nanosecs_big_endian.pcap", 10, ""},
		// tcpdump stops at this file's second section, of version 2.0,
		// after 1 packet; the pcapng specification says to skip such a
		// section, and pcapgo's own test reads the third one's packet too.
		{"robust/gopacket__pcapgo_tests_le_test901.pcapng", 2, ""},
		{"robust/gopacket__pcapgo_tests_be_test901.pcapng", 2, ""},
		// Ethernet and NULL interfaces in one section: tcpdump refuses
		// the file, the MANIFEST (capinfos) counts 5.
		{"robust/pcapng-test-generator__output_le_advanced_test100.pcapng", 5, ""},
		// SLIP: a link type the decoder does not read, refused up front
		// (TestReadHeaderVariants reads such a record, captured length
		// above wire length, in Ethernet).
		{"robust/libpcap__filter_slip-sliplink_print-oobr.pcap", 0,
			"capture: read FILE: unsupported link type 8: echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		{"robust/zeek__radiotap.pcap", 0,
			"capture: read FILE: unsupported link type 127 (RadioTap): echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		// Cut mid-record: tcpdump reads 1 and says "truncated dump file".
		{"robust/dpkt__truncated_dns_2.pcap", 1,
			"capture: FILE: capture file is truncated after 1 packets"},
		// tcpdump reads 18 and stops with "invalid packet capture length":
		// 3 bytes are in the way, after which 181 records read on, in
		// time with the ones before.
		{"robust/suricata-verify__smtp-to-comma_10.7.29.101_49898-178.63.41.150_25.pcap", 199,
			"capture: FILE: damaged record at offset 3695: captured length 3925868813 is over 262144; skipped 3 bytes to the next record"},
		// 18 gzip-compressed sections of six link types (tcpdump reads
		// none: it wants one); the 15th section's packets name an
		// interface it does not declare, after 4785 packets: skipped,
		// one by one.
		{"robust/wireshark-wiki__BT_USB_LinCooked_Eth_80211_RT.ntar.gz", 27226,
			"capture: FILE: damaged enhanced packet block at offset 580400: interface 1 is not declared (the section has 1); skipped 264 bytes to the next block"},
		// pcapng files of link types the decoder does not read: their
		// frames, then the error that says so.
		{"robust/tcpdump__vsock-1.pcapng", 10,
			"capture: read FILE: unsupported link type 271: echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		{"robust/tcpdump__icmp-cksum-oobr-4.pcapng", 1,
			"capture: read FILE: unsupported link type 9 (PPP): echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		// Foreign formats, and a web page named .pcapng.
		{"robust/wireshark-wiki__genbroad.snoop", 0, "capture: read FILE: not a pcap or pcapng file"},
		{"robust/wireshark-wiki__erf-ethernet-example.erf", 0, "capture: read FILE: not a pcap or pcapng file"},
		{"robust/wireshark-wiki__Mixed1.cap", 0, "capture: read FILE: not a pcap or pcapng file"},
		{"robust/sample-captures__IPv6-EH-Hop-by-Hop_html-not-pcapng.pcapng", 0,
			"capture: read FILE: not a pcap or pcapng file"},
	} {
		r, ok := results[tc.name]
		if !ok {
			t.Errorf("%s: not in the corpus", tc.name)
			continue
		}
		var got string
		if r.err != nil {
			got = strings.ReplaceAll(r.err.Error(), filepath.Join(root, tc.name), "FILE")
		}
		if r.frames != tc.frames || got != tc.err {
			t.Errorf("%s: %d frames, error %q; want %d frames, error %q", tc.name, r.frames, got, tc.frames, tc.err)
		}
	}

	// Every file we do not refuse holds as many frames as the MANIFEST
	// says (capinfos, or tcpdump where capinfos failed), but for these:
	differ := map[string]string{
		"robust/gopacket__pcapgo_tests_le_test901.pcapng": "see above",
		"robust/gopacket__pcapgo_tests_be_test901.pcapng": "see above",
		"robust/wireshark-wiki__alp-sample1.pcap":         "the MANIFEST counts tcpdump's 645 lines for 17 packets",
		// tcpdump stops at a damaged record; the reader skips it.
		"robust/suricata-verify__smtp-to-comma_10.7.29.101_49898-178.63.41.150_25.pcap": "see above",
		"robust/suricata-verify__bug-1450-04_tls_DER-incomplete-header.pcap":            "80 bytes in the way after 6 packets, 7 after",
		"robust/suricata-verify__bug-1450-05_tls_DER-incomplete-content.pcap":           "the same",
	}
	manifest, err := os.ReadFile(filepath.Join(root, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(manifest), "\n")[1:] {
		cols := strings.Split(line, "\t")
		if len(cols) < 6 {
			continue
		}
		var frames int
		if _, err := fmt.Sscan(cols[5], &frames); err != nil {
			continue // "unreadable/0"
		}
		r, ok := results[cols[0]]
		if !ok || r.refused || differ[cols[0]] != "" {
			continue
		}
		checked++
		if r.frames != frames {
			t.Errorf("%s: %d frames, the MANIFEST says %s", cols[0], r.frames, cols[5])
		}
	}
	t.Logf("%d files hold the frames the MANIFEST counts", checked)
}
