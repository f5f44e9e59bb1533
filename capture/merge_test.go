package capture_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

// mergeRecs are n one-byte-tagged packets, ms apart from base, the byte
// saying which file wrote them, so that the merged order shows.
func mergeRecs(base time.Time, tag byte, ms ...int) []pcaptest.Record {
	recs := make([]pcaptest.Record, len(ms))
	for i, m := range ms {
		data := []byte{tag, byte(i)}
		recs[i] = pcaptest.Record{TS: base.Add(time.Duration(m) * time.Millisecond), Data: data, Wire: len(data)}
	}
	return recs
}

var mergeBase = time.Date(2024, 5, 6, 12, 0, 0, 0, time.UTC)

func openMerged(t *testing.T, paths []string, stdin io.Reader) *capture.MergedFiles {
	t.Helper()
	m, err := capture.MergeFiles(paths, stdin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Interleaved files come out in time order, each frame with its own
// file's link type; a file of another format or on standard input is one
// of them like any other.
func TestMergeOrder(t *testing.T) {
	dir := t.TempDir()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	a := mergeRecs(mergeBase, 0xa, 0, 30, 40, 90)
	b := mergeRecs(mergeBase, 0xb, 10, 20, 50, 60)
	c := mergeRecs(mergeBase, 0xc, 5, 70, 80)
	aPath := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, false, eth, a))
	bPath := pcaptest.WriteFile(t, dir, "b.pcap.gz", pcaptest.Gzip(t, pcaptest.PcapBigEndian(true, sll, b)))
	stdin := bytes.NewReader(pcaptest.Pcapng(t, c, layers.LinkTypeRaw))

	m := openMerged(t, []string{aPath, bPath, "-"}, stdin)
	fa, fb := wantFrames(a, time.Microsecond, eth), wantFrames(b, 1, sll)
	fc := wantFrames(c, 1, layers.LinkTypeRaw)
	want := []string{fa[0], fc[0], fb[0], fb[1], fa[1], fa[2], fb[2], fb[3], fc[1], fc[2], fa[3]}
	checkEvents(t, readEvents(t, m), want)

	// Each file counted on its own, in the order given.
	wantStats := []capture.FileStats{
		{Name: aPath, Frames: 4, Bytes: 8, First: a[0].TS, Size: 24 + 4*(16+2), Offset: 24 + 4*(16+2)},
		{Name: bPath, Frames: 4, Bytes: 8, First: b[0].TS},
		{Name: "-", Frames: 3, Bytes: 6, First: c[0].TS},
	}
	if got := m.FileStats(); !reflect.DeepEqual(got, wantStats) {
		t.Errorf("FileStats() = %+v\nwant %+v", got, wantStats)
	}
	var f capture.Frame
	if err := m.ReadFrame(&f); err != io.EOF {
		t.Errorf("ReadFrame after the end = %v, want io.EOF", err)
	}
}

// Frames of equal times come in the order the files were given, as
// mergecap has them; files that do not overlap come one after the other,
// whatever their order on the command line.
func TestMergeTiesAndOrder(t *testing.T) {
	dir := t.TempDir()
	eth := layers.LinkTypeEthernet
	a := mergeRecs(mergeBase, 0xa, 0, 10, 10, 20)
	b := mergeRecs(mergeBase, 0xb, 10, 20)
	later := mergeRecs(mergeBase.Add(time.Hour), 0xc, 0, 1)
	aPath := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, true, eth, a))
	bPath := pcaptest.WriteFile(t, dir, "b.pcap", pcaptest.Pcap(t, true, eth, b))
	laterPath := pcaptest.WriteFile(t, dir, "later.pcap", pcaptest.Pcap(t, true, eth, later))
	fa, fb, fl := wantFrames(a, 1, eth), wantFrames(b, 1, eth), wantFrames(later, 1, eth)

	for _, tc := range []struct {
		paths []string
		want  []string
	}{
		{[]string{aPath, bPath}, []string{fa[0], fa[1], fa[2], fb[0], fa[3], fb[1]}},
		{[]string{bPath, aPath}, []string{fa[0], fb[0], fa[1], fa[2], fb[1], fa[3]}},
		{[]string{laterPath, aPath}, append(append([]string{}, fa...), fl...)},
		{[]string{aPath, laterPath}, append(append([]string{}, fa...), fl...)},
	} {
		t.Run(fmt.Sprint(len(tc.paths), filepath.Base(tc.paths[0])), func(t *testing.T) {
			checkEvents(t, readEvents(t, openMerged(t, tc.paths, nil)), tc.want)
		})
	}
}

// A file damaged or cut short in the middle of the timeline is an error
// that names it, in its place; the frames before it, the rest of that
// file and the other files are all read.
func TestMergeDamagedFile(t *testing.T) {
	dir := t.TempDir()
	eth := layers.LinkTypeEthernet
	a := mergeRecs(mergeBase, 0xa, 0, 20, 40, 60)
	b := mergeRecs(mergeBase, 0xb, 10, 30, 50)
	good := pcaptest.Pcap(t, true, eth, b)
	// b's second record claims 4 GiB: damaged, skipped to the third.
	damaged := bytes.Clone(good)
	rec2 := 24 + 16 + 2
	copy(damaged[rec2+8:], []byte{0xff, 0xff, 0xff, 0xff})
	aPath := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, true, eth, a))
	bPath := pcaptest.WriteFile(t, dir, "b.pcap", damaged)
	cutPath := pcaptest.WriteFile(t, dir, "cut.pcap", good[:rec2+16+1])
	fa, fb := wantFrames(a, 1, eth), wantFrames(b, 1, eth)

	m := openMerged(t, []string{aPath, bPath}, nil)
	got := readEvents(t, m)
	// The damage is met when b is read for the frame after its first.
	want := []string{fa[0], fb[0], "", fa[1], fa[2], fb[2], fa[3]}
	if len(got) != len(want) || !strings.HasPrefix(got[2], "error: capture: "+bPath+": damaged record at offset 42") {
		t.Fatalf("read:\n\t%s", strings.Join(got, "\n\t"))
	}
	want[2] = got[2]
	checkEvents(t, got, want)
	if st := m.FileStats(); st[0].Err != nil || st[1].Damaged != 1 || st[1].Frames != 2 {
		t.Errorf("FileStats() = %+v", st)
	}

	m = openMerged(t, []string{cutPath, aPath}, nil)
	var f capture.Frame
	var errs []error
	var frames int
	for {
		err := m.ReadFrame(&f)
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		frames++
	}
	var ie *capture.InputError
	if len(errs) != 1 || !errors.As(errs[0], &ie) || ie.Name != cutPath || !errors.Is(errs[0], capture.ErrTruncated) {
		t.Errorf("errors %v, want one InputError for %s wrapping ErrTruncated", errs, cutPath)
	}
	if frames != 1+len(a) {
		t.Errorf("%d frames, want %d: the one before the cut and all of the other file", frames, 1+len(a))
	}
}

// Files are checked up front as OpenFiles checks them.
func TestMergeRefuses(t *testing.T) {
	dir := t.TempDir()
	a := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, true, layers.LinkTypeEthernet, testRecs()))
	text := pcaptest.WriteFile(t, dir, "alerts.txt", []byte("not a capture\n"))
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{nil, "no capture file given"},
		{[]string{a, "-", "-"}, "stdin (-) given more than once"},
		{[]string{a, text}, text + ": not a pcap or pcapng file"},
		{[]string{a, filepath.Join(dir, "missing.pcap")}, "no such file"},
	} {
		_, err := capture.MergeFiles(tc.paths, strings.NewReader(""))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("MergeFiles(%q) = %v, want an error with %q", tc.paths, err, tc.want)
		}
	}
}

// A series of consecutive files, as tcpdump -G writes them, holds one file
// open at a time, not all of them: memory and descriptors do not grow with
// their number.
func TestMergeOpensFilesInTurn(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 30 {
		recs := mergeRecs(mergeBase.Add(time.Duration(i)*time.Second), byte(i), 0, 100, 200)
		paths = append(paths, pcaptest.WriteFile(t, dir, fmt.Sprintf("%02d.pcap", i), pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs)))
	}
	// Given in reverse: the timeline is still in time order.
	for i, j := 0, len(paths)-1; i < j; i, j = i+1, j-1 {
		paths[i], paths[j] = paths[j], paths[i]
	}
	fds := openFDs(t)
	m := openMerged(t, paths, nil)
	var f capture.Frame
	var last time.Time
	most := 0
	for n := 0; ; n++ {
		err := m.ReadFrame(&f)
		if err == io.EOF {
			if n != 90 {
				t.Errorf("%d frames, want 90", n)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Timestamp.Before(last) {
			t.Fatalf("frame %d at %v, after one at %v", n, f.Timestamp, last)
		}
		last = f.Timestamp
		most = max(most, openFDs(t)-fds)
	}
	if most > 1 {
		t.Errorf("up to %d files open at once, want 1", most)
	}
	if n := openFDs(t) - fds; n != 0 {
		t.Errorf("%d files left open at the end", n)
	}
}

// Close, from another goroutine too, ends the reading: a read blocked on
// standard input returns an error wrapping os.ErrClosed.
func TestMergeClose(t *testing.T) {
	dir := t.TempDir()
	a := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, true, layers.LinkTypeEthernet, testRecs()))
	r, w := io.Pipe()
	defer w.Close()
	m := openMerged(t, []string{a, "-"}, r)
	done := make(chan error, 1)
	go func() {
		var f capture.Frame
		done <- m.ReadFrame(&f) // waits for stdin's header
	}()
	time.Sleep(20 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadFrame after Close = %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrame still blocked 5 s after Close")
	}
}

// Merging allocates nothing per frame: each file's head stays in its
// reader's buffer until it has been delivered.
func TestMergeAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	recs := manyRecs(6000)
	var parts [3][]pcaptest.Record
	for i, r := range recs {
		parts[i*7%3] = append(parts[i*7%3], r) // interleaved, unevenly
	}
	paths := []string{
		pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, true, layers.LinkTypeEthernet, parts[0])),
		pcaptest.WriteFile(t, dir, "b.pcapng", pcaptest.Pcapng(t, parts[1], layers.LinkTypeEthernet)),
		pcaptest.WriteFile(t, dir, "c.pcap.gz", pcaptest.Gzip(t, pcaptest.Pcap(t, true, layers.LinkTypeEthernet, parts[2]))),
	}
	m := openMerged(t, paths, nil)
	var f capture.Frame
	var last time.Time
	for range 100 { // open the files, fill the buffers
		if err := m.ReadFrame(&f); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(3000, func() {
		if err := m.ReadFrame(&f); err != nil {
			t.Fatal(err)
		}
		if f.Timestamp.Before(last) {
			t.Fatalf("frame at %v after one at %v", f.Timestamp, last)
		}
		last = f.Timestamp
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
}
