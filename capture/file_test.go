package capture_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/annotated"
	"github.com/echowatch/echowatch/internal/pcaptest"
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

// headerCase is a minimal file in annotated hex, holding one packet at
// 2024-05-06T12:53:20 UTC plus a fraction of a second, and the events
// reading it gives (FILE stands for its path).
type headerCase struct{ name, hex, want string }

// headerCases are the minimal files of every header variant.
func headerCases() []headerCase { return slices.Concat(pcapHeaderCases(), pcapngHeaderCases()) }

func TestReadHeaderVariants(t *testing.T) {
	for _, tc := range headerCases() {
		t.Run(tc.name, func(t *testing.T) {
			data := hexBytes(t, tc.hex)
			for _, gz := range []bool{false, true} {
				name := "capture.bin" // the name says nothing of the format
				if gz {
					data, name = pcaptest.Gzip(t, data), "capture.pcap"
				}
				path := pcaptest.WriteFile(t, t.TempDir(), name, data)
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

// testRecs are three packets: whole, cut by a snap length, and one byte.
func testRecs() []pcaptest.Record {
	base := time.Date(2024, 5, 6, 12, 53, 20, 123456789, time.UTC)
	return []pcaptest.Record{
		{TS: base, Data: bytes.Repeat([]byte{0xaa}, 42), Wire: 42, Iface: 0},
		{TS: base.Add(1500*time.Millisecond + 1), Data: bytes.Repeat([]byte{0x55}, 60), Wire: 1514, Iface: 1},
		{TS: base.Add(3 * time.Second), Data: []byte{0x01}, Wire: 1, Iface: 0},
	}
}

// wantFrames renders recs as ReadFrame should return them, with timestamps
// at the file's resolution and link types by interface.
func wantFrames(recs []pcaptest.Record, res time.Duration, lts ...layers.LinkType) []string {
	var out []string
	for _, r := range recs {
		iface := r.Iface
		if len(lts) == 1 { // a classic pcap has one link type and no interfaces
			iface = 0
		}
		f := capture.Frame{
			Data: r.Data, Timestamp: r.TS.Truncate(res), CaptureLength: len(r.Data),
			Length: r.Wire, LinkType: lts[iface], Interface: iface,
		}
		out = append(out, render(&f))
	}
	return out
}

// manyRecs is n Ethernet-sized packets of varying length, 1 ms apart.
func manyRecs(n int) []pcaptest.Record {
	base := time.Date(2024, 5, 6, 12, 53, 20, 0, time.UTC)
	data := bytes.Repeat([]byte{0x42}, 1514)
	recs := make([]pcaptest.Record, n)
	for i := range recs {
		l := 60 + (i*97)%(1514-60)
		recs[i] = pcaptest.Record{TS: base.Add(time.Duration(i) * time.Millisecond), Data: data[:l], Wire: l}
	}
	return recs
}

func TestOpenFilesFormats(t *testing.T) {
	recs := testRecs()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	twoSections := append(pcaptest.Pcapng(t, recs[:2], eth, sll), pcaptest.Pcapng(t, recs[2:], sll)...)
	for _, tc := range []struct {
		name string
		file string // the name of the file: never a hint of its format
		data []byte
		want []string
	}{
		{"pcap little-endian µs", "a.pcapng", pcaptest.Pcap(t, false, eth, recs), wantFrames(recs, time.Microsecond, eth)},
		{"pcap little-endian ns", "a.pcap", pcaptest.Pcap(t, true, sll, recs), wantFrames(recs, 1, sll)},
		{"pcap big-endian µs", "a.pcap", pcaptest.PcapBigEndian(false, layers.LinkTypeRaw, recs), wantFrames(recs, time.Microsecond, layers.LinkTypeRaw)},
		{"pcap big-endian ns", "a.pcap", pcaptest.PcapBigEndian(true, layers.LinkTypeIPv4, recs), wantFrames(recs, 1, layers.LinkTypeIPv4)},
		{"pcapng, Ethernet and Linux SLL interfaces", "a.pcap", pcaptest.Pcapng(t, recs, eth, sll), wantFrames(recs, 1, eth, sll)},
		{"pcapng, interface 0 is Linux SLL in the second section", "a.pcapng", twoSections, []string{
			wantFrames(recs, 1, eth, sll)[0], wantFrames(recs, 1, eth, sll)[1], wantFrames(recs[2:], 1, sll, sll)[0],
		}},
		{"gzip pcap little-endian", "a.pcap", pcaptest.Gzip(t, pcaptest.Pcap(t, true, eth, recs)), wantFrames(recs, 1, eth)},
		{"gzip pcap big-endian", "a.txt", pcaptest.Gzip(t, pcaptest.PcapBigEndian(false, eth, recs)), wantFrames(recs, time.Microsecond, eth)},
		{"gzip pcapng", "a.pcapng", pcaptest.Gzip(t, pcaptest.Pcapng(t, recs, eth, sll)), wantFrames(recs, 1, eth, sll)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := pcaptest.WriteFile(t, t.TempDir(), tc.file, tc.data)
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
	aData := pcaptest.Pcap(t, false, eth, recs[:2])
	a := pcaptest.WriteFile(t, dir, "a.pcap", aData)
	c := pcaptest.WriteFile(t, dir, "c.pcap.gz", pcaptest.Gzip(t, pcaptest.PcapBigEndian(true, sll, recs[2:])))
	stdin := bytes.NewReader(pcaptest.Pcapng(t, recs[1:], eth, sll))

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
		{Name: a, Frames: 2, Bytes: 42 + 60, First: recs[0].TS.Truncate(time.Microsecond),
			Size: uint64(len(aData)), Offset: uint64(len(aData))},
		{Name: "-", Frames: 2, Bytes: 60 + 1, First: recs[1].TS},
		{Name: c, Frames: 1, Bytes: 1, First: recs[2].TS},
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
	pcap, ng := pcaptest.Pcap(t, true, eth, recs), pcaptest.Pcapng(t, recs, eth, eth)
	dir := t.TempDir()
	a, b := pcaptest.WriteFile(t, dir, "a.pcap", pcap), pcaptest.WriteFile(t, dir, "b.pcapng", ng)
	c := pcaptest.WriteFile(t, dir, "c.pcap.gz", pcaptest.Gzip(t, pcap))
	src, err := capture.OpenFiles([]string{a, b, c, "-"}, bytes.NewReader(pcap))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pcapSize, ngSize := uint64(len(pcap)), uint64(len(ng))
	first := recs[0].TS

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
	good := pcaptest.WriteFile(t, dir, "good.pcap", pcaptest.Pcap(t, false, layers.LinkTypeEthernet, testRecs()))
	pcapHeader := pcaptest.Pcap(t, false, layers.LinkTypeEthernet, nil)
	oldVersion := slices.Clone(pcapHeader)
	oldVersion[6] = 3 // version 2.3: older than pcapgo reads
	file := func(name string, b []byte) string { return pcaptest.WriteFile(t, dir, name, b) }

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
		{"gzip of text", []string{file("alerts.pcap.gz", pcaptest.Gzip(t, []byte("not a capture")))},
			"capture: read " + dir + "/alerts.pcap.gz: not a pcap or pcapng file", capture.ErrNotCapture},
		{"gzip of nothing", []string{file("empty.pcap.gz", pcaptest.Gzip(t, nil))},
			"capture: read " + dir + "/empty.pcap.gz: not a pcap or pcapng file (file is empty)", capture.ErrNotCapture},
		{"gzip of gzip", []string{file("twice.gz", pcaptest.Gzip(t, pcaptest.Gzip(t, pcapHeader)))},
			"capture: read " + dir + "/twice.gz: not a pcap or pcapng file", capture.ErrNotCapture},
		{"bad gzip header", []string{file("bad.gz", []byte{0x1f, 0x8b, 0x09, 0, 0, 0, 0, 0, 0, 0})},
			"capture: read " + dir + "/bad.gz: gzip file header: gzip: invalid header", nil},
		{"gzip header cut", []string{file("cut.gz", []byte{0x1f, 0x8b, 0x08, 0x00})},
			"capture: read " + dir + "/cut.gz: gzip file header is truncated", nil},
		{"pcap header cut", []string{file("cut.pcap", pcapHeader[:10])},
			"capture: read " + dir + "/cut.pcap: pcap file header is truncated", nil},
		{"pcapng header cut", []string{file("cut.pcapng", pcaptest.Pcapng(t, nil, layers.LinkTypeEthernet)[:20])},
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

// cutCase is a capture cut short, and the events reading it gives before
// the next file's frames; want gets the path the capture was written to.
type cutCase struct {
	name string
	data []byte
	want func(name string) []string
}

// testCuts reads each case's capture, then a good file after it.
func testCuts(t *testing.T, cases []cutCase) {
	recs, eth := testRecs(), layers.LinkTypeEthernet
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cut := pcaptest.WriteFile(t, dir, "cut", tc.data)
			next := pcaptest.WriteFile(t, dir, "next.pcap", pcaptest.Pcap(t, true, eth, recs[2:]))
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

// truncatedAfter is the error for the capture name cut after n packets.
func truncatedAfter(name string, n int) string {
	return fmt.Sprintf("error: capture: %s: capture file is truncated after %d packets", name, n)
}

// damagedCase is a capture whose last record or block cannot be right,
// with nothing readable after it, and the error's message after the
// file's name.
type damagedCase struct {
	name string
	data []byte
	want string
}

// testDamagedToEnd checks that such damage is damage to the end of the
// file, not a cut: the message names the file and where, nothing
// unbounded is allocated, and the timeline goes on to the next file.
func testDamagedToEnd(t *testing.T, cases []damagedCase) {
	recs := testRecs()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := pcaptest.WriteFile(t, dir, "bad", tc.data)
			next := pcaptest.WriteFile(t, dir, "next.pcap", pcaptest.Pcap(t, true, layers.LinkTypeEthernet, recs[2:]))
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
	a := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs))
	b := pcaptest.WriteFile(t, dir, "b.pcap", pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs))

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
		{"pcap", pcaptest.Pcap(t, true, eth, recs), 0},
		{"pcap big-endian", pcaptest.PcapBigEndian(false, eth, recs), 0},
		{"pcap Linux SLL2", pcaptest.Pcap(t, true, sll2, recs), 0},
		{"pcapng", pcaptest.Pcapng(t, recs, eth), 0},
		{"gzip pcap", pcaptest.Gzip(t, pcaptest.Pcap(t, true, eth, recs)), 0},
		{"gzip pcapng", pcaptest.Gzip(t, pcaptest.Pcapng(t, recs, eth)), 0},
		{"pcapng Linux SLL2", pcaptest.Pcapng(t, recs, sll2), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := pcaptest.WriteFile(t, t.TempDir(), "a", tc.data)
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

// BenchmarkFileSource reads files of frames of all sizes, and of small
// frames only (a flood's), where the work per frame weighs most against
// the copy of the bytes.
func BenchmarkFileSource(b *testing.B) {
	recs := manyRecs(20000)
	small := make([]pcaptest.Record, 200000)
	for i := range small {
		small[i] = recs[i%len(recs)]
		small[i].Data, small[i].Wire = small[i].Data[:60], 60
	}
	eth := layers.LinkTypeEthernet
	for _, bc := range []struct {
		name string
		recs []pcaptest.Record
		data []byte
	}{
		{"pcap", recs, pcaptest.Pcap(b, true, eth, recs)},
		{"pcapng", recs, pcaptest.Pcapng(b, recs, eth)},
		{"pcap.gz", recs, pcaptest.Gzip(b, pcaptest.Pcap(b, true, eth, recs))},
		{"pcap 60B", small, pcaptest.Pcap(b, false, eth, small)},
		{"pcapng 60B", small, pcaptest.Pcapng(b, small, eth)},
	} {
		var size int64
		for _, r := range bc.recs {
			size += int64(len(r.Data))
		}
		b.Run(bc.name, func(b *testing.B) {
			path := pcaptest.WriteFile(b, b.TempDir(), "a", bc.data)
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
			b.SetBytes(size / int64(len(bc.recs)))
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
