package sinks_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

// evidenceConfig is a roomy configuration in a fresh directory; each test
// tightens the bound it is about.
func evidenceConfig(t *testing.T) sinks.EvidenceConfig {
	return sinks.EvidenceConfig{Dir: t.TempDir(), Packets: 100, Snaplen: 65535,
		MaxOpen: 8, MaxFiles: 100, MaxBytes: 1 << 30}
}

// newEvidence returns an Evidence for cfg, and its log.
func newEvidence(t *testing.T, cfg sinks.EvidenceConfig) (*sinks.Evidence, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	ev, err := sinks.NewEvidence(cfg, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Close() })
	return ev, &log
}

func create(t *testing.T, ev *sinks.Evidence, id string) detect.EvidenceFile {
	t.Helper()
	f := ev.Create(id, layers.LinkTypeEthernet)
	if f == nil {
		t.Fatalf("Create(%q) = nil, stats %+v", id, ev.Stats())
	}
	return f
}

// keep creates the file of incident id and writes one packet of 60 bytes:
// a file that holds no packet is not kept. It is 24+16+60 = 100 bytes.
func keep(t *testing.T, ev *sinks.Evidence, id string) detect.EvidenceFile {
	t.Helper()
	f := create(t, ev, id)
	if !f.WritePacket(frame(time.Unix(1700000000, 0), 60, 60)) {
		t.Fatalf("%s: first packet refused, stats %+v", id, ev.Stats())
	}
	return f
}

// frame returns an Ethernet packet of n bytes (each its index, mod 256)
// that was length bytes long on the wire.
func frame(ts time.Time, n, length int) *capture.Packet {
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = byte(i)
	}
	return &capture.Packet{Timestamp: ts, LinkType: layers.LinkTypeEthernet, Raw: raw, Length: length}
}

type record struct {
	ts             time.Time
	caplen, length int
	data           []byte
}

// readPcap reads a file with gopacket's reader, not ours.
func readPcap(t *testing.T, path string) (layers.LinkType, uint32, []record) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, err := pcapgo.NewReader(file)
	if err != nil {
		t.Fatal(err)
	}
	var recs []record
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return r.LinkType(), r.Snaplen(), recs
		}
		if err != nil {
			t.Fatalf("%s: record %d: %v", path, len(recs), err)
		}
		recs = append(recs, record{ci.Timestamp, ci.CaptureLength, ci.Length, data})
	}
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// dirNames lists dir's entries, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func logLines(log *bytes.Buffer) int { return strings.Count(log.String(), "\n") }

func TestEvidenceFile(t *testing.T) {
	cfg := evidenceConfig(t)
	ev, log := newEvidence(t, cfg)
	f := create(t, ev, "00c0ffee_incident-1")
	want := filepath.Join(cfg.Dir, "00c0ffee_incident-1.pcap")
	if f.Name() != want {
		t.Fatalf("Name() = %q, want %q", f.Name(), want)
	}
	t0 := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	pkts := []*capture.Packet{
		frame(t0, 60, 60),
		frame(t0.Add(999*time.Nanosecond), 1514, 1514), // the same microsecond
		frame(t0.Add(time.Second+1000), 42, 9000),      // cut before it got here
	}
	for i, p := range pkts {
		if !f.WritePacket(p) {
			t.Fatalf("WritePacket %d = false", i)
		}
	}
	f.Close()

	raw, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	header, _ := hex.DecodeString("" +
		"d4c3b2a1" + // magic: microsecond timestamps, little-endian
		"0200" + "0400" + // version 2.4
		"00000000" + // time zone
		"00000000" + // accuracy
		"ffff0000" + // snaplen 65535
		"01000000" + // link type 1: Ethernet
		"d9813866" + // record 0: seconds 1714979289
		"40e20100" + // microseconds 123456
		"3c000000" + // captured 60
		"3c000000") // on the wire 60
	if !bytes.HasPrefix(raw, header) {
		t.Fatalf("file starts\n%x\nwant\n%x", raw[:min(len(raw), len(header))], header)
	}

	link, snaplen, recs := readPcap(t, want)
	if link != layers.LinkTypeEthernet || snaplen != 65535 || len(recs) != len(pkts) {
		t.Fatalf("link %v snaplen %d, %d records; want Ethernet, 65535, %d", link, snaplen, len(recs), len(pkts))
	}
	for i, r := range recs {
		p := pkts[i]
		if ts := p.Timestamp.Truncate(time.Microsecond); !r.ts.Equal(ts) {
			t.Errorf("record %d: time %v, want %v", i, r.ts, ts)
		}
		if r.caplen != len(p.Raw) || r.length != p.Length || !bytes.Equal(r.data, p.Raw) {
			t.Errorf("record %d: caplen %d length %d, want %d %d; data equal %v",
				i, r.caplen, r.length, len(p.Raw), p.Length, bytes.Equal(r.data, p.Raw))
		}
	}

	// The project's own reader takes it too.
	src, err := capture.OpenFiles([]string{want}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var fr capture.Frame
	for i, p := range pkts {
		if err := src.ReadFrame(&fr); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !fr.Timestamp.Equal(p.Timestamp.Truncate(time.Microsecond)) || fr.Length != p.Length ||
			!bytes.Equal(fr.Data, p.Raw) || fr.LinkType != layers.LinkTypeEthernet {
			t.Errorf("frame %d: %v len %d link %v, want %v %d", i, fr.Timestamp, fr.Length, fr.LinkType, p.Timestamp, p.Length)
		}
	}
	if err := src.ReadFrame(&fr); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}

	s := ev.Stats()
	if want := (sinks.EvidenceStats{Files: 1, Packets: 3, Bytes: int64(len(raw))}); s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
	if log.Len() != 0 {
		t.Errorf("logged %q", log)
	}
}

func TestEvidencePacketsBound(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.Packets = 3
	ev, _ := newEvidence(t, cfg)
	f := create(t, ev, "a")
	t0 := time.Unix(1700000000, 0)
	for i, want := range []bool{true, true, false, false} {
		if got := f.WritePacket(frame(t0.Add(time.Duration(i)*time.Millisecond), 100, 100)); got != want {
			t.Fatalf("WritePacket %d = %v, want %v", i+1, got, want)
		}
	}
	// The third packet closed it: the file is complete on disk already.
	if _, _, recs := readPcap(t, f.Name()); len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	f.Close()
	f.Close()
	if s := ev.Stats(); s.Packets != 3 || s.Files != 1 || s.Bytes != 24+3*(16+100) || s.Bytes != size(t, f.Name()) {
		t.Errorf("stats %+v, want 3 packets in 1 file of %d bytes", s, size(t, f.Name()))
	}
}

func TestEvidenceSnaplenAndLinkType(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.Snaplen = 64
	ev, _ := newEvidence(t, cfg)
	f := create(t, ev, "a")
	t0 := time.Unix(1700000000, 0)
	other := frame(t0, 80, 80)
	other.LinkType = layers.LinkTypeRaw
	for i, p := range []*capture.Packet{
		frame(t0, 100, 1500), // cut here to 64
		other,                // skipped: the file is Ethernet
		frame(t0, 64, 64),    // exactly the snaplen
		frame(t0, 40, 1500),  // cut before, kept whole here
		frame(t0, 30, 0),     // length unknown: at least what was captured
	} {
		if !f.WritePacket(p) {
			t.Fatalf("WritePacket %d = false", i)
		}
	}
	f.Close()
	link, snaplen, recs := readPcap(t, f.Name())
	if link != layers.LinkTypeEthernet || snaplen != 64 {
		t.Errorf("link %v snaplen %d, want Ethernet 64", link, snaplen)
	}
	want := [][2]int{{64, 1500}, {64, 64}, {40, 1500}, {30, 30}}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.caplen != want[i][0] || r.length != want[i][1] || !bytes.Equal(r.data, frame(t0, r.caplen, 0).Raw) {
			t.Errorf("record %d: caplen %d length %d data %x, want %v", i, r.caplen, r.length, r.data, want[i])
		}
	}
	if s := ev.Stats(); s.Skipped != 1 || s.Packets != 4 {
		t.Errorf("stats %+v, want 1 skipped, 4 written", s)
	}
}

// TestEvidenceNoPacketNoFile: a file that ends without a packet is no
// evidence: it is removed, and names nothing, whether it was closed so
// or MaxBytes refused its first packet.
func TestEvidenceNoPacketNoFile(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.Snaplen, cfg.MaxBytes = 100, 300
	ev, log := newEvidence(t, cfg)
	a := create(t, ev, "a")
	a.Close()
	keep(t, ev, "b") // 100 bytes, open
	keep(t, ev, "c") // 200
	d := create(t, ev, "d")
	if d.WritePacket(frame(time.Unix(1700000000, 0), 100, 100)) { // 224 + 116 does not fit
		t.Fatal("d: a packet taken beyond MaxBytes")
	}
	for _, f := range []detect.EvidenceFile{a, d} {
		if f.Name() != "" {
			t.Errorf("a file without a packet names %s", f.Name())
		}
	}
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"b.pcap", "c.pcap"}) {
		t.Errorf("dir holds %q", got)
	}
	if s := ev.Stats(); s.Files != 4 || s.Bytes != 200 || s.Refused != 1 || s.Errors != 0 || s.Removed != 0 {
		t.Errorf("stats %+v, want 4 files, 200 bytes kept, 1 refused", s)
	}
	if log.Len() != 0 {
		t.Errorf("logged %q", log)
	}
}

func TestEvidenceMaxOpen(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.MaxOpen = 2
	ev, log := newEvidence(t, cfg)
	a := keep(t, ev, "a")
	keep(t, ev, "b")
	if f := ev.Create("c", layers.LinkTypeEthernet); f != nil {
		t.Fatalf("third file %s with MaxOpen 2", f.Name())
	}
	// The incident's file is open already: a second one would truncate it
	// under the first.
	if f := ev.Create("b", layers.LinkTypeEthernet); f != nil {
		t.Fatal("a second file for open incident b")
	}
	a.Close()
	if f := ev.Create("b", layers.LinkTypeEthernet); f != nil {
		t.Fatal("a second file for open incident b, with room to open it")
	}
	keep(t, ev, "c")
	if s := ev.Stats(); s.Files != 3 || s.Refused != 3 || s.Errors != 0 {
		t.Errorf("stats %+v, want 3 files, 3 refused", s)
	}
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"a.pcap", "b.pcap", "c.pcap"}) {
		t.Errorf("dir holds %q", got)
	}
	if log.Len() != 0 {
		t.Errorf("a bound reached is logged: %q", log)
	}
}

func TestEvidenceMaxFiles(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.MaxOpen, cfg.MaxFiles = 3, 2
	// A file of an earlier run, older than all: never this run's to remove.
	if err := os.WriteFile(filepath.Join(cfg.Dir, "earlier.pcap"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	ev, _ := newEvidence(t, cfg)
	a := keep(t, ev, "a")
	b := keep(t, ev, "b")
	if f := ev.Create("c", layers.LinkTypeEthernet); f != nil {
		t.Fatal("a third file while the two kept are open")
	}
	a.Close()
	c := keep(t, ev, "c") // removes a, never b which is open
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"b.pcap", "c.pcap", "earlier.pcap"}) {
		t.Fatalf("dir holds %q after c", got)
	}
	// Finished first is removed first, whatever the order of creation.
	if a.Name() != "" {
		t.Errorf("a, removed, still names %s", a.Name())
	}
	c.Close()
	b.Close()
	keep(t, ev, "d")
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"b.pcap", "d.pcap", "earlier.pcap"}) {
		t.Fatalf("dir holds %q after d", got)
	}
	// An analyst took b away: its removal is a success all the same.
	if err := os.Remove(filepath.Join(cfg.Dir, "b.pcap")); err != nil {
		t.Fatal(err)
	}
	keep(t, ev, "e")
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"d.pcap", "e.pcap", "earlier.pcap"}) {
		t.Fatalf("dir holds %q after e", got)
	}
	if err := ev.Close(); err != nil {
		t.Fatal(err)
	}
	s := ev.Stats()
	if s.Files != 5 || s.Removed != 3 || s.Refused != 1 || s.Errors != 0 || s.Bytes != 2*100 {
		t.Errorf("stats %+v, want 5 files, 3 removed, 1 refused, %d bytes", s, 2*100)
	}
}

func TestEvidenceMaxBytes(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.Snaplen = 100
	cfg.MaxBytes = 300 // a file with one frame of 100 bytes is 24+16+100 = 140
	ev, _ := newEvidence(t, cfg)
	t0 := time.Unix(1700000000, 0)
	p := frame(t0, 100, 100)

	a := create(t, ev, "a")
	if !a.WritePacket(p) {
		t.Fatal("a: first packet refused")
	}
	a.Close()
	b := create(t, ev, "b") // 140 + 24
	if !b.WritePacket(p) {  // 164 + 116 = 280
		t.Fatal("b: first packet refused")
	}
	if !b.WritePacket(p) { // 396 does not fit: a goes, 256
		t.Fatal("b: second packet refused with a to remove")
	}
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"b.pcap"}) {
		t.Fatalf("dir holds %q, want a removed", got)
	}
	if b.WritePacket(p) { // 372 does not fit, nothing to remove: b ends
		t.Fatal("b: third packet taken beyond MaxBytes")
	}
	if b.WritePacket(p) {
		t.Fatal("b: a packet taken after it ended")
	}
	if _, _, recs := readPcap(t, b.Name()); len(recs) != 2 {
		t.Errorf("b: %d records, want 2", len(recs))
	}
	if s := ev.Stats(); s.Bytes != 256 || s.Bytes != size(t, b.Name()) || s.Removed != 1 || s.Refused != 1 || s.Packets != 3 {
		t.Errorf("stats %+v, want 256 bytes kept, 1 removed, 1 refused, 3 packets", s)
	}

	// A bound of exactly one full file: an open one leaves no room for the
	// next file's header.
	cfg = evidenceConfig(t)
	cfg.Snaplen = 100
	cfg.MaxBytes = 140
	ev, _ = newEvidence(t, cfg)
	c := create(t, ev, "c")
	if !c.WritePacket(p) {
		t.Fatal("c: a packet that fits refused")
	}
	if f := ev.Create("d", layers.LinkTypeEthernet); f != nil {
		t.Fatal("d created beyond MaxBytes")
	}
	c.Close()
	create(t, ev, "d")
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"d.pcap"}) {
		t.Errorf("dir holds %q, want c removed for d", got)
	}
	if s := ev.Stats(); s.Bytes != 24 || s.Removed != 1 || s.Refused != 1 {
		t.Errorf("stats %+v, want 24 bytes kept, 1 removed, 1 refused", s)
	}
}

func TestEvidenceReplayedIncident(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.MaxFiles = 2
	ev, _ := newEvidence(t, cfg)
	t0 := time.Unix(1700000000, 0)
	a := create(t, ev, "a")
	a.WritePacket(frame(t0, 100, 100))
	a.WritePacket(frame(t0, 100, 100))
	a.Close()
	a = create(t, ev, "a") // overwritten, not kept twice
	a.WritePacket(frame(t0, 50, 50))
	a.Close()
	if _, _, recs := readPcap(t, a.Name()); len(recs) != 1 {
		t.Fatalf("replayed a: %d records, want 1", len(recs))
	}
	if s := ev.Stats(); s.Bytes != 24+16+50 || s.Removed != 0 {
		t.Fatalf("stats %+v, want a's %d bytes kept once", s, 24+16+50)
	}
	// b fits beside a; c then removes a, and nothing else.
	keep(t, ev, "b").Close()
	keep(t, ev, "c")
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"b.pcap", "c.pcap"}) {
		t.Errorf("dir holds %q", got)
	}
	if s := ev.Stats(); s.Bytes != 2*100 || s.Removed != 1 {
		t.Errorf("stats %+v, want 2 files of one packet kept, 1 removed", s)
	}
}

func TestEvidenceConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*sinks.EvidenceConfig)
		want string
	}{
		{"no dir", func(c *sinks.EvidenceConfig) { c.Dir = "" }, "sinks/evidence: no directory given"},
		{"packets", func(c *sinks.EvidenceConfig) { c.Packets = 0 }, "sinks/evidence: Packets is 0: want at least 1 packet per file"},
		{"snaplen 0", func(c *sinks.EvidenceConfig) { c.Snaplen = 0 }, "sinks/evidence: Snaplen is 0: want 1 to 262144 bytes"},
		{"snaplen big", func(c *sinks.EvidenceConfig) { c.Snaplen = 262145 }, "sinks/evidence: Snaplen is 262145: want 1 to 262144 bytes"},
		{"max open", func(c *sinks.EvidenceConfig) { c.MaxOpen = -1 }, "sinks/evidence: MaxOpen is -1: want at least 1 file"},
		{"max files", func(c *sinks.EvidenceConfig) { c.MaxFiles = 0 }, "sinks/evidence: MaxFiles is 0: want at least 1 file"},
		{"max bytes", func(c *sinks.EvidenceConfig) { c.Snaplen, c.MaxBytes = 100, 139 },
			"sinks/evidence: MaxBytes is 139: want at least 140, one file with one frame of Snaplen 100 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := evidenceConfig(t)
			cfg.Dir = filepath.Join(cfg.Dir, "evidence")
			tc.edit(&cfg)
			_, err := sinks.NewEvidence(cfg, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if cfg.Dir != "" {
				if _, err := os.Stat(cfg.Dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a bad configuration made the directory: %v", err)
				}
			}
		})
	}
	// The smallest bounds are valid.
	cfg := evidenceConfig(t)
	cfg.Packets, cfg.Snaplen, cfg.MaxOpen, cfg.MaxFiles, cfg.MaxBytes = 1, 1, 1, 1, 41
	if _, err := sinks.NewEvidence(cfg, nil); err != nil {
		t.Errorf("smallest bounds: %v", err)
	}
}

func TestEvidenceDirectory(t *testing.T) {
	t.Run("created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		cfg := evidenceConfig(t)
		cfg.Dir = dir
		newEvidence(t, cfg)
		info, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !info.IsDir() || info.Mode().Perm()&^0o750 != 0 {
			t.Errorf("made %v, want a directory of mode 0750 or less (umask)", info.Mode())
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("the probe was left behind: %q", names)
		}
	})
	t.Run("under a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		cfg := evidenceConfig(t)
		cfg.Dir = filepath.Join(file, "evidence")
		_, err := sinks.NewEvidence(cfg, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "sinks/evidence: create directory: ") || !errors.Is(err, syscall.ENOTDIR) {
			t.Fatalf("error %v, want create directory: ENOTDIR", err)
		}
	})
	t.Run("not writable", func(t *testing.T) {
		cfg := evidenceConfig(t)
		switch {
		case os.Geteuid() != 0:
			if err := os.Chmod(cfg.Dir, 0o500); err != nil {
				t.Fatal(err)
			}
		case runtime.GOOS == "linux":
			cfg.Dir = "/proc" // exists, and takes no new file even from root
		default:
			t.Skip("root writes everywhere")
		}
		_, err := sinks.NewEvidence(cfg, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "sinks/evidence: directory not writable: ") {
			t.Fatalf("error %v, want directory not writable", err)
		}
	})
}

func TestEvidenceUnsafeID(t *testing.T) {
	cfg := evidenceConfig(t)
	ev, log := newEvidence(t, cfg)
	bad := []string{"", ".", "..", "../x", "a/b", `a\b`, "a.b", "a b", "a\x00", "é", strings.Repeat("a", 65)}
	for _, id := range bad {
		if f := ev.Create(id, layers.LinkTypeEthernet); f != nil {
			t.Errorf("Create(%q) = %s", id, f.Name())
		}
	}
	keep(t, ev, strings.Repeat("Z", 64)).Close()
	if s := ev.Stats(); s.Refused != uint64(len(bad)) || s.Files != 1 {
		t.Errorf("stats %+v, want %d refused, 1 file", s, len(bad))
	}
	if names := dirNames(t, cfg.Dir); len(names) != 1 {
		t.Errorf("dir holds %q, want the one good file", names)
	}
	if n := logLines(log); n != 1 {
		t.Errorf("%d log lines for %d bad ids, want 1:\n%s", n, len(bad), log)
	}
}

// TestEvidenceRemoveError makes a finished file impossible to remove
// (root removes any file, but not a directory with something in it).
func TestEvidenceRemoveError(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.MaxFiles = 1
	ev, log := newEvidence(t, cfg)
	a := keep(t, ev, "a")
	a.Close()
	if err := os.Remove(a.Name()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(a.Name(), "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if f := ev.Create("b", layers.LinkTypeEthernet); f != nil {
			t.Fatal("b created although a, to make room, could not be removed")
		}
	}
	if s := ev.Stats(); s.Errors != 2 || s.Refused != 2 || s.Removed != 0 || s.Bytes != 100 {
		t.Errorf("stats %+v, want 2 errors, 2 refused, a still counted", s)
	}
	if n := logLines(log); n != 1 || !strings.Contains(log.String(), "sinks/evidence: remove:") {
		t.Errorf("%d log lines, want 1:\n%s", n, log)
	}
	// Once it can go, the bound works again.
	if err := os.RemoveAll(a.Name()); err != nil {
		t.Fatal(err)
	}
	create(t, ev, "b")
	if s := ev.Stats(); s.Removed != 1 {
		t.Errorf("stats %+v, want a removed", s)
	}
}

func TestEvidenceWritePacketAllocs(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.Packets = 1 << 30
	cfg.Snaplen = 1000
	ev, _ := newEvidence(t, cfg)
	f := create(t, ev, "a")
	p := frame(time.Unix(1700000000, 0), 1514, 1514) // cut: both paths of the buffer
	small := frame(time.Unix(1700000000, 0), 60, 60)
	other := frame(time.Unix(1700000000, 0), 60, 60)
	other.LinkType = layers.LinkTypeRaw
	allocs := testing.AllocsPerRun(10000, func() {
		if !f.WritePacket(p) || !f.WritePacket(small) || !f.WritePacket(other) {
			t.Fatal("WritePacket = false")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per WritePacket, want 0", allocs)
	}
}

// TestEvidenceStatsConcurrent reads the counters while the engine's
// goroutine writes, for the race detector.
func TestEvidenceStatsConcurrent(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.Packets, cfg.Snaplen, cfg.MaxFiles, cfg.MaxBytes = 10, 1000, 5, 20000
	ev, _ := newEvidence(t, cfg)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				ev.Stats()
			}
		}
	})
	p := frame(time.Unix(1700000000, 0), 300, 300)
	for i := range 200 {
		f := create(t, ev, "i"+strings.Repeat("x", i%50))
		for f.WritePacket(p) {
		}
	}
	close(stop)
	wg.Wait()
	if s := ev.Stats(); s.Files != 200 || s.Bytes > cfg.MaxBytes || s.Removed < 150 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
	if n := len(dirNames(t, cfg.Dir)); n > cfg.MaxFiles {
		t.Errorf("%d files kept, want at most %d", n, cfg.MaxFiles)
	}
}

// TestEvidenceReplayRefused checks that an incident id refused a second
// file leaves its first one kept and counted: removed in turn, never left
// behind beyond MaxFiles.
func TestEvidenceReplayRefused(t *testing.T) {
	cfg := evidenceConfig(t)
	cfg.MaxFiles, cfg.MaxOpen = 2, 1
	ev, _ := newEvidence(t, cfg)
	keep(t, ev, "a").Close()
	b := keep(t, ev, "b")
	if f := ev.Create("a", layers.LinkTypeEthernet); f != nil {
		t.Fatal("a second file opened beside b, past MaxOpen")
	}
	b.Close()
	keep(t, ev, "c").Close()
	keep(t, ev, "d").Close()
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"c.pcap", "d.pcap"}) {
		t.Errorf("dir holds %q, want the 2 newest", got)
	}
}
