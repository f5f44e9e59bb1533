package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

// readSplit reads src as a pipeline does with several workers: one
// goroutine hands out the regions, workers goroutines read them, and the
// regions are checked in order. It returns what readEvents would, and how
// many regions guessed their first record wrong (a region in which no
// record starts finds none, and is read again too).
func readSplit(t *testing.T, src *capture.FileSource, workers int) (events []string, rereads int) {
	t.Helper()
	sp, ok := src.Split()
	if !ok {
		t.Fatal("Split refused")
	}
	type result struct {
		reg    *capture.Region
		frames []string
		start  int64 // the region's Start after its first frame
	}
	read := func(reg *capture.Region) ([]string, int64) {
		var out []string
		var f capture.Frame
		start := int64(-1)
		for reg.ReadFrame(&f) == nil {
			if out == nil {
				start = reg.Start()
			}
			out = append(out, render(&f))
		}
		reg.Close()
		return out, start
	}
	in := make([]chan *capture.Region, workers)
	out := make([]chan result, workers)
	order := make(chan any, 1024) // a worker's index, or an error of Next
	for w := range workers {
		in[w], out[w] = make(chan *capture.Region, 4), make(chan result, 4)
		go func() {
			for reg := range in[w] {
				frames, start := read(reg)
				out[w] <- result{reg, frames, start}
			}
		}()
	}
	go func() {
		for i := 0; ; i++ {
			reg, err := sp.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				order <- err
				continue
			}
			in[i%workers] <- reg
			order <- i % workers
		}
		for _, c := range in {
			close(c)
		}
		close(order)
	}()
	for o := range order {
		if err, ok := o.(error); ok {
			events = append(events, "error: "+err.Error())
			continue
		}
		r := <-out[o.(int)]
		// What a reader that hands its frames on as it goes is told
		// after its first frame: what Check then says.
		follows := sp.Follows(r.reg, r.start)
		v, err := sp.Check(r.reg)
		if r.frames != nil && follows != v {
			t.Errorf("a region whose first record starts at %d: Follows says %v, Check %v", r.start, follows, v)
		}
		switch v {
		case capture.Reread:
			if len(r.frames) > 0 {
				rereads++
			}
			reg := sp.Reread(r.reg)
			r.frames, _ = read(reg)
			v, err = sp.Check(reg)
			if v != capture.Accept {
				t.Fatalf("a region read again was not accepted: %v", v)
			}
			fallthrough
		case capture.Accept:
			events = append(events, r.frames...)
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap() // the region's errors, one by one
			}
			for _, err := range errs {
				if err != nil {
					events = append(events, "error: "+err.Error())
				}
			}
		case capture.Skip:
			if len(r.frames) > 0 && r.frames[0] == "" {
				t.Fatal("unreachable")
			}
		}
	}
	return events, rereads
}

// checkSplitEvents compares the frames of what readSplit read with those
// readEvents read, and the errors with the errors.
func checkSplitEvents(t *testing.T, got, want []string) {
	t.Helper()
	sort := func(events []string) (frames, errs []string) {
		for _, e := range events {
			if strings.HasPrefix(e, "error: ") {
				errs = append(errs, e)
			} else {
				frames = append(frames, e)
			}
		}
		return frames, errs
	}
	gotFrames, gotErrs := sort(got)
	wantFrames, wantErrs := sort(want)
	checkEvents(t, gotFrames, wantFrames)
	checkEvents(t, gotErrs, wantErrs)
}

// randomRecs returns n records of random sizes and bytes, a millisecond
// apart.
func randomRecs(rng *rand.Rand, n int) []pcaptest.Record {
	base := time.Date(2024, 5, 6, 12, 53, 20, 0, time.UTC)
	recs := make([]pcaptest.Record, n)
	for i := range recs {
		data := make([]byte, rng.IntN(300))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		recs[i] = pcaptest.Record{TS: base.Add(time.Duration(i) * time.Millisecond), Data: data, Wire: len(data) + rng.IntN(2)*100}
	}
	return recs
}

// TestSplit reads captures both ways, with ReadFrame and as regions read
// by several goroutines, with regions not much larger than records, so
// that many records straddle two: the frames, their order, the errors,
// theirs, and the per-file counts must be the same. (A region's errors
// come with it, after its frames: where among the frames is not compared.) A region with no record starting
// in it, or one lured by a payload that looks like records, is read
// again: the second can only happen on purpose.
func TestSplit(t *testing.T) {
	defer capture.SetRegionSize(400)()
	rng := rand.New(rand.NewPCG(1, 2))
	eth := layers.LinkTypeEthernet
	many := randomRecs(rng, 300)
	lured := randomRecs(rng, 50)
	for i := range lured {
		if i%5 == 0 {
			lured[i].Data = append(pcaptest.FakeRecords(), lured[i].Data...)
			lured[i].Wire = len(lured[i].Data)
		}
	}
	le := pcaptest.Pcap(t, false, eth, many)
	offs := []int{24} // of each record
	for _, r := range many {
		offs = append(offs, offs[len(offs)-1]+16+len(r.Data))
	}
	bad := bytes.Clone(le)
	binary.LittleEndian.PutUint32(bad[offs[1]+8:], 1<<30) // the second record's length
	// Damage here and there: a length too long for any record, garbage
	// longer than several regions, a length that reads into the next
	// records, a length that runs past the end of the file.
	damaged := bytes.Clone(le)
	binary.LittleEndian.PutUint32(damaged[offs[10]+8:], 1<<30)
	binary.LittleEndian.PutUint32(damaged[offs[100]+8:], uint32(offs[103]-offs[100]+7))
	binary.LittleEndian.PutUint32(damaged[offs[290]+8:], 100000)
	damaged = slices.Concat(damaged[:offs[50]], bytes.Repeat([]byte{0xff}, 1500), damaged[offs[50]:])
	// Zeros, as a disk gives for a lost block, and damage at the end.
	zeroed := bytes.Clone(le)
	clear(zeroed[offs[20]+3 : offs[20]+1000])
	binary.LittleEndian.PutUint32(zeroed[offs[299]+8:], 1<<30)
	for _, tc := range []struct {
		name   string
		files  [][]byte
		reread bool
	}{
		{"little-endian µs", [][]byte{le}, false},
		{"big-endian ns", [][]byte{pcaptest.PcapBigEndian(true, eth, many)}, false},
		{"three files", [][]byte{pcaptest.Pcap(t, true, eth, many[:100]), pcaptest.PcapBigEndian(false, eth, many[100:110]), pcaptest.Pcap(t, false, eth, many[110:])}, false},
		{"cut in a record's data", [][]byte{le[:len(le)-5], pcaptest.Pcap(t, false, eth, many[:3])}, false},
		{"cut in a record header", [][]byte{le[:24+16+len(many[0].Data)+7]}, false},
		{"header only", [][]byte{le[:24]}, false},
		{"damaged record", [][]byte{bad, pcaptest.Pcap(t, false, eth, many[:3])}, false},
		{"damaged here and there", [][]byte{damaged, pcaptest.Pcap(t, false, eth, many[:3])}, true},
		{"zeroed, and damaged at the end", [][]byte{zeroed, bad, pcaptest.Pcap(t, false, eth, many[:3])}, false},
		{"payloads that look like records", [][]byte{pcaptest.Pcap(t, false, eth, lured)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for i, b := range tc.files {
				paths = append(paths, pcaptest.WriteFile(t, dir, string(rune('a'+i))+".pcap", b))
			}
			open := func() *capture.FileSource {
				src, err := capture.OpenFiles(paths, nil)
				if err != nil {
					t.Fatal(err)
				}
				return src
			}
			one := open()
			want := readEvents(t, one)
			for _, workers := range []int{1, 3} {
				src := open()
				got, rereads := readSplit(t, src, workers)
				checkSplitEvents(t, got, want)
				if tc.reread && rereads == 0 || !tc.reread && rereads > 0 {
					t.Errorf("%d workers: %d regions read again", workers, rereads)
				}
				for i, fs := range src.FileStats() {
					w := one.FileStats()[i]
					if fs.Frames != w.Frames || fs.Bytes != w.Bytes || (fs.Err == nil) != (w.Err == nil) ||
						!fs.First.Equal(w.First) || fs.Offset != w.Offset || fs.Size != w.Size {
						t.Errorf("file %d: stats %+v, want %+v", i, fs, w)
					}
				}
			}
		})
	}
}

func TestSplitRefuses(t *testing.T) {
	dir := t.TempDir()
	recs := testRecs()
	eth := layers.LinkTypeEthernet
	pcap := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, false, eth, recs))
	for _, tc := range []struct {
		name  string
		paths []string
	}{
		{"pcapng", []string{pcaptest.WriteFile(t, dir, "b.pcapng", pcaptest.Pcapng(t, recs, eth, eth))}},
		{"gzip", []string{pcap, pcaptest.WriteFile(t, dir, "c.pcap.gz", pcaptest.Gzip(t, pcaptest.Pcap(t, false, eth, recs)))}},
		{"stdin", []string{pcap, "-"}},
	} {
		src, err := capture.OpenFiles(tc.paths, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := src.Split(); ok {
			t.Errorf("%s: split", tc.name)
		}
	}
	// Nor once a frame has been read.
	src, _ := capture.OpenFiles([]string{pcap}, nil)
	var f capture.Frame
	if err := src.ReadFrame(&f); err != nil {
		t.Fatal(err)
	}
	if _, ok := src.Split(); ok {
		t.Error("split after a frame was read")
	}
}

// TestSplitClose closes the source while regions are read: they end, and
// the error says the source is closed.
func TestSplitClose(t *testing.T) {
	defer capture.SetRegionSize(97)()
	dir := t.TempDir()
	path := pcaptest.WriteFile(t, dir, "a.pcap", pcaptest.Pcap(t, false, layers.LinkTypeEthernet, randomRecs(rand.New(rand.NewPCG(3, 4)), 100)))
	src, _ := capture.OpenFiles([]string{path}, nil)
	sp, _ := src.Split()
	reg, err := sp.Next()
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	var f capture.Frame
	for reg.ReadFrame(&f) == nil {
	}
	reg.Close()
	if _, err := sp.Check(reg); !errors.Is(err, capture.ErrTruncated) && (err == nil || !strings.Contains(err.Error(), "closed")) {
		t.Errorf("check after close: %v", err)
	}
	if _, err := sp.Next(); err == nil || err == io.EOF {
		t.Errorf("next after close: %v", err)
	}
}

// A region damaged every 152 bytes, thousands of times: reading it costs
// memory for the reports it gives, not for every stretch it skips, and
// Check counts them all.
func TestSplitDamageBounded(t *testing.T) {
	base := time.Date(2024, 5, 6, 12, 53, 20, 0, time.UTC)
	var recs []pcaptest.Record
	for i := range 8 {
		recs = append(recs, pcaptest.Record{TS: base.Add(time.Duration(i) * time.Millisecond), Data: []byte{byte(i)}, Wire: 1})
	}
	good := pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs)
	data := slices.Clone(good[:24])
	const stretches = 1700
	for range stretches {
		// A record header that claims 4 GiB, then eight good records.
		data = binary.LittleEndian.AppendUint64(data, uint64(base.Unix()))
		data = binary.LittleEndian.AppendUint64(data, 0xffffffff_ffffffff)
		data = append(data, good[24:]...)
	}
	path := pcaptest.WriteFile(t, t.TempDir(), "damaged.pcap", data)
	src, err := capture.OpenFiles([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sp, _ := src.Split()
	reg, err := sp.Next()
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var f capture.Frame
	frames := 0
	for reg.ReadFrame(&f) == nil {
		frames++
	}
	runtime.ReadMemStats(&after)
	reg.Close()
	// The region's buffer (2.3 MiB, where the pool has none), a window
	// to skip damage with (256 KiB) and the words of the damage: under 3
	// MiB. A window per stretch took 427 MiB.
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Errorf("reading %d damaged stretches allocated %d MiB", stretches, n>>20)
	}
	if n := reg.Damages(); n > 11 {
		t.Errorf("the region keeps %d damaged stretches, of which 11 are reported", n)
	}
	v, err := sp.Check(reg)
	if v != capture.Accept || frames != 8*stretches {
		t.Fatalf("Check = %v, %d frames, want Accept, %d: %v", v, frames, 8*stretches, err)
	}
	var reports []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		reports = j.Unwrap()
	}
	if len(reports) != 11 || !strings.HasSuffix(reports[10].Error(), "further damage in this file is counted, not reported") {
		t.Errorf("Check reports %d errors, want 11: %v", len(reports), err)
	}
	if st := src.FileStats()[0]; st.Damaged != stretches || st.Skipped != 16*stretches || st.Frames != 8*stretches {
		t.Errorf("FileStats: %d damaged, %d skipped, %d frames; want %d, %d, %d", st.Damaged, st.Skipped, st.Frames, stretches, 16*stretches, 8*stretches)
	}
}

// FuzzSplit feeds arbitrary records after a classic pcap header to both
// ways of reading: the regions must give exactly what ReadFrame gives.
func FuzzSplit(f *testing.F) {
	eth := layers.LinkTypeEthernet
	rng := rand.New(rand.NewPCG(5, 6))
	f.Add(pcaptest.Pcap(f, false, eth, randomRecs(rng, 20))[24:])                                          // records of random bytes
	f.Add(pcaptest.Pcap(f, false, eth, []pcaptest.Record{{Data: pcaptest.FakeRecords(), Wire: 200}})[24:]) // a payload that looks like records
	f.Add([]byte{1, 2, 3})                                                                                 // a cut record header
	damaged := pcaptest.Pcap(f, false, eth, randomRecs(rng, 20))[24:]
	binary.LittleEndian.PutUint32(damaged[8:], 0xffffffff) // the first record of 4 GiB
	f.Add(damaged)
	f.Add(slices.Concat(damaged[:100], make([]byte, 300), damaged[100:])) // zeros in the middle
	f.Fuzz(func(t *testing.T, records []byte) {
		defer capture.SetRegionSize(64)()
		path := pcaptest.WriteFile(t, t.TempDir(), "f.pcap", append(pcaptest.Pcap(t, false, eth, nil), records...))
		one, err := capture.OpenFiles([]string{path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := readEvents(t, one)
		two, _ := capture.OpenFiles([]string{path}, nil)
		got, _ := readSplit(t, two, 2)
		checkSplitEvents(t, got, want)
	})
}

// BenchmarkSplit reads a file region by region on one goroutine, as each
// of several workers does: per frame, the cost to compare with
// BenchmarkFileSource's.
func BenchmarkSplit(b *testing.B) {
	recs := manyRecs(20000)
	var size int64
	for _, r := range recs {
		size += int64(len(r.Data))
	}
	path := pcaptest.WriteFile(b, b.TempDir(), "a", pcaptest.Pcap(b, true, layers.LinkTypeEthernet, recs))
	var sp *capture.Splitter
	var reg *capture.Region
	next := func() {
		for {
			if sp != nil {
				var err error
				if reg, err = sp.Next(); err == nil {
					return
				}
			}
			src, err := capture.OpenFiles([]string{path}, nil)
			if err != nil {
				b.Fatal(err)
			}
			sp, _ = src.Split()
		}
	}
	var f capture.Frame
	b.SetBytes(size / int64(len(recs)))
	b.ReportAllocs()
	for b.Loop() {
		for reg == nil || reg.ReadFrame(&f) != nil {
			if reg != nil {
				reg.Close()
				sp.Check(reg)
			}
			next()
		}
	}
}
