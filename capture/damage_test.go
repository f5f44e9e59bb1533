package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

// ngFrame renders the frame that NgBlocks.EPB writes.
func ngFrame(iface int, lt layers.LinkType, us int64, data []byte) string {
	f := capture.Frame{Data: data, Timestamp: pcaptest.NgTime.Add(time.Duration(us) * time.Microsecond),
		CaptureLength: len(data), Length: len(data), LinkType: lt, Interface: iface}
	return render(&f)
}

// put writes v at off in b, little-endian.
func put(b []byte, off int, v uint32) []byte {
	b = slices.Clone(b)
	binary.LittleEndian.PutUint32(b[off:], v)
	return b
}

// A damaged pcapng block is named as damaged (the file, its offset, its
// type, what is wrong), the reader skips to the next block whose lengths
// agree and reads the packets after it; the file is not reported as cut.
// The same from a file, from standard input and gzip-compressed.
func TestNgDamagedBlock(t *testing.T) {
	eth := layers.LinkTypeEthernet
	data := func(i int) []byte { return bytes.Repeat([]byte{0xe0 + byte(i)}, 4+i) }
	w := pcaptest.NgBlocks{T: t}
	w.SHB().IDB(eth) // blocks 0, 1
	for i := range 6 {
		w.EPB(0, uint64(i)*1000, data(i)) // blocks 2..7
	}
	good := w.B
	at := func(blk int) int { return w.Blocks[blk] }
	size := func(blk int) int {
		if blk+1 < len(w.Blocks) {
			return w.Blocks[blk+1] - w.Blocks[blk]
		}
		return len(good) - w.Blocks[blk]
	}
	frame := func(i int) string { return ngFrame(0, eth, int64(i)*1000, data(i)) }
	frames := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, frame(i))
		}
		return out
	}
	// The third packet's block is at(4); the packets are blocks 2.. .
	third := 4
	dmg := func(name, what string, blk int, why string, skipped int) string {
		return fmt.Sprintf("error: capture: %s: damaged %s at offset %d: %s; skipped %d bytes to the next block",
			name, what, at(blk), why, skipped)
	}
	unknown := slices.Clone(good)
	unknown[at(third)] = 0x46 // a bit flipped in the block type: 0x46 is no block type

	for _, tc := range []struct {
		name string
		data []byte
		want func(name string) []string
	}{
		{"block length 0xfffffff0", put(good, at(third)+4, 0xfffffff0), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "enhanced packet block", third, "block length 4294967280 is over 16 MiB", size(third))},
				frames(3, 4, 5))
		}},
		{"trailing length differs", put(good, at(third+1)-4, 0x40), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "enhanced packet block", third, fmt.Sprintf("block length %d, trailing length 64", size(third)), size(third))},
				frames(3, 4, 5))
		}},
		{"block length not a multiple of 4", put(good, at(third)+4, uint32(size(third)+1)), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "enhanced packet block", third, fmt.Sprintf("block length %d is not a multiple of 4", size(third)+1), size(third))},
				frames(3, 4, 5))
		}},
		{"block length shorter than the block's fields", put(good, at(third)+4, 12), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "enhanced packet block", third, "block length 12 is shorter than 32", size(third))},
				frames(3, 4, 5))
		}},
		{"two damaged blocks in a row: one report", put(put(good, at(third)+4, 0xfffffff0), at(third+1)+4, 0xfffffff0), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "enhanced packet block", third, "block length 4294967280 is over 16 MiB", size(third)+size(third+1))},
				frames(4, 5))
		}},
		{"unknown block type", unknown, func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "block of unknown type 0x00000046", third, "not a pcapng block type", size(third))},
				frames(3, 4, 5))
		}},
		{"captured length longer than the block", put(good, at(third)+20, 100), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "enhanced packet block", third, "captured length 100 is longer than the block", size(third))},
				frames(3, 4, 5))
		}},
		{"packet on an undeclared interface", put(good, at(third)+8, 5), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{dmg(name, "enhanced packet block", third, "interface 5 is not declared (the section has 1)", size(third))},
				frames(3, 4, 5))
		}},
		{"garbage between blocks", slices.Concat(good[:at(third)], bytes.Repeat([]byte{0x5a}, 13), good[at(third):]), func(name string) []string {
			return slices.Concat(frames(0, 1),
				[]string{fmt.Sprintf("error: capture: %s: damaged block of unknown type 0x5a5a5a5a at offset %d: block length 1515870810 is over 16 MiB; skipped 13 bytes to the next block", name, at(third))},
				frames(2, 3, 4, 5))
		}},
		{"the last block damaged", put(good, at(7)+4, 0xfffffff0), func(name string) []string {
			return slices.Concat(frames(0, 1, 2, 3, 4),
				[]string{fmt.Sprintf("error: capture: %s: damaged enhanced packet block at offset %d: block length 4294967280 is over 16 MiB; skipped the last %d bytes: no good block after it", name, at(7), size(7))})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := pcaptest.WriteFile(t, dir, "bad.pcapng", tc.data)
			gz := pcaptest.WriteFile(t, dir, "bad.pcapng.gz", pcaptest.Gzip(t, tc.data))
			next := pcaptest.WriteFile(t, dir, "next.pcapng", good)
			for _, in := range []struct {
				path, name string
				stdin      io.Reader
			}{{bad, bad, nil}, {gz, gz, nil}, {"-", "stdin", bytes.NewReader(tc.data)}} {
				src, err := capture.OpenFiles([]string{in.path, next}, in.stdin)
				if err != nil {
					t.Fatal(err)
				}
				got, errs := readEventsErrors(t, src)
				src.Close()
				checkEvents(t, got, append(tc.want(in.name), frames(0, 1, 2, 3, 4, 5)...))
				var ie *capture.InputError
				if err := errs[0]; !errors.Is(err, capture.ErrDamaged) || errors.Is(err, capture.ErrTruncated) || !errors.As(err, &ie) || ie.Name != in.path {
					t.Errorf("%s: %v: want ErrDamaged in an InputError for %s", in.name, err, in.path)
				}
				n := uint64(len(tc.want(in.name)) - 1) // the frames of the file
				if st := src.FileStats()[0]; st.Err != nil || st.Damaged != 1 || st.Frames != n {
					t.Errorf("%s: FileStats: Err %v, %d damaged stretches, %d frames; want no error, 1, %d", in.name, st.Err, st.Damaged, st.Frames, n)
				}
			}
		})
	}
}

// A pcapng file none of whose interfaces has a link type the decoder reads
// is an error naming the file and the link types, as a classic pcap of
// such a link type is; a file that mixes them is read, and FileStats
// counts the frames the decoder cannot read, by link type.
func TestNgLinkTypes(t *testing.T) {
	radio := layers.LinkTypeIEEE80211Radio
	user := layers.LinkType(147)
	eth := layers.LinkTypeEthernet
	dir := t.TempDir()
	one, two, mixed := pcaptest.NgBlocks{T: t}, pcaptest.NgBlocks{T: t}, pcaptest.NgBlocks{T: t}
	one.SHB().IDB(user).EPB(0, 0, []byte{1, 2, 3, 4}).EPB(0, 1, []byte{5, 6, 7, 8})
	two.SHB().IDB(user).IDB(radio).EPB(0, 0, []byte{1}).EPB(1, 1, []byte{2})
	mixed.SHB().IDB(radio).IDB(eth).EPB(0, 0, []byte{1}).EPB(1, 1, []byte{2}).EPB(0, 2, []byte{3})
	const decodes = ": echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"
	for _, tc := range []struct {
		name     string
		data     []byte
		want     []string
		err      string // of FileStats, "" for none
		undec    uint64
		undecLTs []layers.LinkType
	}{
		{"one interface, link type 147", one.B, []string{
			ngFrame(0, user, 0, []byte{1, 2, 3, 4}), ngFrame(0, user, 1, []byte{5, 6, 7, 8}),
			"error: capture: read DIR/one.pcapng: unsupported link type 147" + decodes,
		}, "capture: read DIR/one.pcapng: unsupported link type 147" + decodes, 2, []layers.LinkType{user}},
		{"two interfaces, neither decoded", two.B, []string{
			ngFrame(0, user, 0, []byte{1}), ngFrame(1, radio, 1, []byte{2}),
			"error: capture: read DIR/two.pcapng: unsupported link types 147, 127 (RadioTap)" + decodes,
		}, "capture: read DIR/two.pcapng: unsupported link types 147, 127 (RadioTap)" + decodes, 2, []layers.LinkType{user, radio}},
		{"radiotap and Ethernet", mixed.B, []string{
			ngFrame(0, radio, 0, []byte{1}), ngFrame(1, eth, 1, []byte{2}), ngFrame(0, radio, 2, []byte{3}),
		}, "", 2, []layers.LinkType{radio}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.Fields(tc.name)[0]
			if tc.err == "" {
				name = "mixed"
			}
			path := pcaptest.WriteFile(t, dir, name+".pcapng", tc.data)
			src, err := capture.OpenFiles([]string{path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.ReplaceAll(w, "DIR", dir))
			}
			checkEvents(t, readEvents(t, src), want)
			st := src.FileStats()[0]
			var got string
			if st.Err != nil {
				got = strings.ReplaceAll(st.Err.Error(), dir, "DIR")
				if !errors.Is(st.Err, capture.ErrUnsupportedLinkType) {
					t.Errorf("Err %v does not wrap ErrUnsupportedLinkType", st.Err)
				}
			}
			if got != tc.err || st.Undecoded != tc.undec || !slices.Equal(st.UndecodedLinkTypes, tc.undecLTs) {
				t.Errorf("FileStats: Err %q, %d undecoded of %v; want %q, %d of %v", got, st.Undecoded, st.UndecodedLinkTypes, tc.err, tc.undec, tc.undecLTs)
			}
		})
	}
}

// A classic pcap record whose header cannot be right is damage too: the
// reader names its offset, skips to the next run of records that read
// well, and reads them, from a file as from a stream.
func TestPcapDamagedRecord(t *testing.T) {
	eth := layers.LinkTypeEthernet
	recs := manyRecs(20)
	good := pcaptest.Pcap(t, false, eth, recs)
	offs := []int{24}
	for _, r := range recs {
		offs = append(offs, offs[len(offs)-1]+16+len(r.Data))
	}
	frames := func(from, to int) []string { return wantFrames(recs[from:to], time.Microsecond, eth) }
	for _, tc := range []struct {
		name string
		data []byte
		want func(name string) []string
	}{
		{"captured length 4 GiB", put(good, offs[5]+8, 0xffffffff), func(name string) []string {
			return slices.Concat(frames(0, 5), []string{fmt.Sprintf(
				"error: capture: %s: damaged record at offset %d: captured length 4294967295 is over 262144; skipped %d bytes to the next record",
				name, offs[5], offs[6]-offs[5])}, frames(6, 20))
		}},
		{"garbage between records", slices.Concat(good[:offs[5]], bytes.Repeat([]byte{0xff}, 100), good[offs[5]:]), func(name string) []string {
			return slices.Concat(frames(0, 5), []string{fmt.Sprintf(
				"error: capture: %s: damaged record at offset %d: captured length 4294967295 is over 262144; skipped 100 bytes to the next record",
				name, offs[5])}, frames(5, 20))
		}},
		{"captured length runs past the end, records after it", put(good, offs[15]+8, 100000), func(name string) []string {
			return slices.Concat(frames(0, 15), []string{fmt.Sprintf(
				"error: capture: %s: damaged record at offset %d: captured length 100000 runs past the end of the file; skipped %d bytes to the next record",
				name, offs[15], offs[16]-offs[15])}, frames(16, 20))
		}},
		{"nothing readable after it", put(good, offs[19]+8, 0xffffffff), func(name string) []string {
			return slices.Concat(frames(0, 19), []string{fmt.Sprintf(
				"error: capture: %s: damaged record at offset %d: captured length 4294967295 is over 262144; skipped the last %d bytes: no good record after it",
				name, offs[19], offs[20]-offs[19])})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := pcaptest.WriteFile(t, dir, "bad.pcap", tc.data)
			next := pcaptest.WriteFile(t, dir, "next.pcap", pcaptest.Pcap(t, false, eth, recs[:2]))
			for _, in := range []struct {
				path, name string
				stdin      io.Reader
			}{{bad, bad, nil}, {"-", "stdin", bytes.NewReader(tc.data)}} {
				src, err := capture.OpenFiles([]string{in.path, next}, in.stdin)
				if err != nil {
					t.Fatal(err)
				}
				checkEvents(t, readEvents(t, src), append(tc.want(in.name), frames(0, 2)...))
				src.Close()
				if st := src.FileStats()[0]; st.Damaged != 1 || st.Err != nil {
					t.Errorf("%s: FileStats: %d damaged, Err %v", in.name, st.Damaged, st.Err)
				}
			}
		})
	}
}

// A file damaged again and again is reported a few times, then counted:
// the warnings a run collects stay few.
func TestDamageReportsBounded(t *testing.T) {
	eth := layers.LinkTypeEthernet
	w := pcaptest.NgBlocks{T: t}
	w.SHB().IDB(eth)
	for i := range 100 {
		w.EPB(0, uint64(i), []byte{byte(i)})
		w.EPB(7, uint64(i), []byte{byte(i)}) // an undeclared interface
	}
	path := pcaptest.WriteFile(t, t.TempDir(), "bad.pcapng", w.B)
	src, err := capture.OpenFiles([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var errs []string
	for _, e := range readEvents(t, src) {
		if strings.HasPrefix(e, "error: ") {
			errs = append(errs, e)
		}
	}
	st := src.FileStats()[0]
	if len(errs) > 11 || st.Damaged != 100 || st.Frames != 100 || st.Skipped != 100*36 {
		t.Errorf("%d errors, FileStats %d damaged, %d frames, %d bytes skipped; want at most 11, 100, 100, 3600",
			len(errs), st.Damaged, st.Frames, st.Skipped)
	}
	if last := errs[len(errs)-1]; !strings.Contains(last, "further damage") {
		t.Errorf("the last error does not say further damage is only counted: %s", last)
	}
}

// readEventsErrors is readEvents, with the errors as they came.
func readEventsErrors(t *testing.T, src capture.Source) (events []string, errs []error) {
	t.Helper()
	var f capture.Frame
	for range 1_000_000 {
		err := src.ReadFrame(&f)
		if err == io.EOF {
			return events, errs
		}
		if err != nil {
			events, errs = append(events, "error: "+err.Error()), append(errs, err)
			continue
		}
		events = append(events, render(&f))
	}
	t.Fatal("no io.EOF after a million reads")
	return nil, nil
}

// mkfifo makes a named pipe in a test's directory.
func mkfifo(t *testing.T) string {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no mkfifo:", err)
	}
	return fifo
}

// readUntilClosed starts reading src, closes it after a moment, and fails
// the test unless ReadFrame returns os.ErrClosed promptly.
func readUntilClosed(t *testing.T, src *capture.FileSource) {
	t.Helper()
	ended := make(chan error, 1)
	go func() {
		var f capture.Frame
		ended <- src.ReadFrame(&f)
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-ended:
		t.Fatalf("ReadFrame returned %v with nothing to read", err)
	default:
	}
	src.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadFrame after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrame still blocked 5 s after Close")
	}
}

// A named pipe no one has opened for writing: open(2) would wait for a
// writer with no way to stop it. Close must end the wait.
func TestNamedPipeNoWriter(t *testing.T) {
	fifo := mkfifo(t)
	t.Cleanup(func() {
		// A reader still blocked in open(2) (the bug this test is for)
		// gets a writer, and goes.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	src, err := capture.OpenFiles([]string{fifo}, nil)
	if err != nil {
		t.Fatal(err)
	}
	readUntilClosed(t, src)
	if st := src.FileStats()[0]; st.Err != nil {
		t.Errorf("FileStats: Err %v after a stop", st.Err)
	}
}

// Standard input that no one writes to: Close must end the read.
func TestStdinNoWriter(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	src, err := capture.OpenFiles([]string{"-"}, r)
	if err != nil {
		t.Fatal(err)
	}
	readUntilClosed(t, src)
}

// Reading standard input, which a read blocked on can leave behind,
// allocates nothing per read; and a read that blocks still ends when the
// source is stopped.
func TestStdinReadAllocatesNothing(t *testing.T) {
	stop := make(chan struct{})
	r := capture.NewStopReader(zeros{}, stop)
	buf := make([]byte, 4096)
	if n, err := r.Read(buf); n != len(buf) || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if n := testing.AllocsPerRun(100, func() { r.Read(buf) }); n != 0 {
		t.Errorf("%v allocations per read", n)
	}
	close(stop)
	if _, err := r.Read(buf); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after the stop = %v, want os.ErrClosed", err)
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	stop = make(chan struct{})
	r = capture.NewStopReader(pr, stop)
	go func() {
		pw.Write([]byte{1, 2, 3})
		close(stop) // with the next read blocked, or not begun
	}()
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if _, err := r.Read(buf); !errors.Is(err, os.ErrClosed) {
		t.Errorf("a blocked read stopped: %v, want os.ErrClosed", err)
	}
}

// A named pipe whose writer comes later, and writes slowly: it is read
// whole.
func TestNamedPipeLateWriter(t *testing.T) {
	fifo := mkfifo(t)
	recs := testRecs()
	data := pcaptest.Pcap(t, true, layers.LinkTypeEthernet, recs)
	go func() {
		time.Sleep(300 * time.Millisecond)
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Close()
		time.Sleep(200 * time.Millisecond) // opened, nothing written yet
		for _, b := range [][]byte{data[:30], data[30:]} {
			w.Write(b)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	src, err := capture.OpenFiles([]string{fifo}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	checkEvents(t, readEvents(t, src), wantFrames(recs, 1, layers.LinkTypeEthernet))
}
