//go:build linux

package sinks_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// mountTiny mounts a tmpfs of 16 KiB on dir until the test ends: a disk
// that fills at once. It skips the test without the right to mount.
func mountTiny(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=16k"); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot mount a tmpfs (needs root): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fillDisk fills the file system of dir, but for free bytes (whole pages
// of 4 KiB), with a file of its own.
func fillDisk(t *testing.T, dir string, free int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	var n int64
	for {
		k, err := f.Write(block)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(max(0, n/4096*4096-free)); err != nil {
		t.Fatal(err)
	}
}

// TestEvidenceWriteError writes evidence to a disk that is full after the
// first 16 KiB: writes fail with ENOSPC. A file that gets no packet in is
// removed and names nothing; one that got some keeps its whole records,
// and is a capture every reader opens.
func TestEvidenceWriteError(t *testing.T) {
	cfg := evidenceConfig(t)
	mountTiny(t, cfg.Dir)
	ev, log := newEvidence(t, cfg)
	t0 := time.Unix(1700000000, 0)
	for _, id := range []string{"a", "b"} {
		f := create(t, ev, id)
		// Larger than the disk: the frame cannot be written whole.
		if f.WritePacket(frame(t0, 40000, 40000)) {
			t.Fatalf("%s: a failed write returned true", id)
		}
		if f.WritePacket(frame(t0, 60, 60)) {
			t.Fatalf("%s: a write after a failed one returned true", id)
		}
		f.Close()
		if f.Name() != "" {
			t.Errorf("%s: a file without a packet is named %s", id, f.Name())
		}
	}
	// The first packet reaches the disk at once; the next ones stay in
	// the buffer, and fail at the end when the disk has filled meanwhile:
	// 4 of them fit in c's first page.
	c := create(t, ev, "c")
	if !c.WritePacket(frame(t0, 60, 60)) {
		t.Fatal("c: first write returned false")
	}
	for i := range 10 {
		if !c.WritePacket(frame(t0, 1000, 1000)) {
			t.Fatalf("c: buffered write %d returned false", i)
		}
	}
	fillDisk(t, cfg.Dir, 0)
	err := ev.Close()
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "sinks/evidence: close ") {
		t.Errorf("Close: %v, want close ...: ENOSPC", err)
	}
	if err := ev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if f := ev.Create("d", layers.LinkTypeEthernet); f != nil {
		t.Error("a file created after Close")
	}
	if c.Name() == "" {
		t.Fatal("c, which holds packets, names no file")
	}
	_, _, recs := readPcap(t, c.Name()) // fails the test on a partial record
	if len(recs) != 1+3 {
		t.Errorf("c holds %d packets, want the first and the 3 others that fit in its page", len(recs))
	}
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"c.pcap", "filler"}) {
		t.Errorf("dir holds %q, want c.pcap only", got)
	}
	if s := ev.Stats(); s.Errors != 3 || s.Files != 3 || s.Packets != 4 || s.Bytes != size(t, c.Name()) {
		t.Errorf("stats %+v, want 3 errors, 3 files, c's 4 packets and %d bytes kept", s, size(t, c.Name()))
	}
	// One line for the write failures, one for the close failure.
	if n := logLines(log); n != 2 || !strings.Contains(log.String(), "no space left on device") {
		t.Errorf("%d log lines, want 2:\n%s", n, log)
	}
}

// TestEvidenceFirstPacketFails: the disk has room for a file's header but
// not its first packet. The file is removed at once, and names nothing:
// the incident's alert, which goes out after the first packet, names no
// file.
func TestEvidenceFirstPacketFails(t *testing.T) {
	cfg := evidenceConfig(t)
	mountTiny(t, cfg.Dir)
	ev, _ := newEvidence(t, cfg)
	fillDisk(t, cfg.Dir, 4096)
	f := create(t, ev, "a") // the header takes the last page
	if f.WritePacket(frame(time.Unix(1700000000, 0), 8000, 8000)) {
		t.Fatal("a first packet that does not fit returned true")
	}
	if f.Name() != "" {
		t.Errorf("the file names %s", f.Name())
	}
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"filler"}) {
		t.Errorf("dir holds %q, want a.pcap removed", got)
	}
	if s := ev.Stats(); s.Errors != 1 || s.Bytes != 0 || s.Packets != 0 {
		t.Errorf("stats %+v, want 1 error, nothing kept", s)
	}
	// And a disk too full for the header: no file at all.
	fillDisk(t, cfg.Dir, 0)
	if f := ev.Create("b", layers.LinkTypeEthernet); f != nil {
		t.Errorf("created %s on a full disk", f.Name())
	}
	if got := dirNames(t, cfg.Dir); !slices.Equal(got, []string{"filler"}) {
		t.Errorf("dir holds %q, want b.pcap removed", got)
	}
}

// TestEvidenceReplacesWhatIsThere: an evidence file is always a new
// file. A symbolic link or a hard link put in its place is not written
// through (the target stays as it was), and a FIFO does not block the
// sensor: each is removed and the file made anew.
func TestEvidenceReplacesWhatIsThere(t *testing.T) {
	cfg := evidenceConfig(t)
	target := filepath.Join(cfg.Dir, "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(cfg.Dir, "a.pcap")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(target, filepath.Join(cfg.Dir, "b.pcap")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(cfg.Dir, "c.pcap"), 0o644); err != nil {
		t.Fatal(err)
	}
	ev, log := newEvidence(t, cfg)
	refused := make(chan []string, 1)
	go func() { // Create could block: not on the test's goroutine
		var ids []string
		for _, id := range []string{"a", "b", "c"} {
			f := ev.Create(id, layers.LinkTypeEthernet)
			if f == nil {
				ids = append(ids, id)
				continue
			}
			f.WritePacket(frame(time.Unix(1700000000, 0), 60, 60))
			f.Close()
		}
		refused <- ids
	}()
	select {
	case ids := <-refused:
		if len(ids) > 0 {
			t.Errorf("no file for %q: %s", ids, log)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Create blocks on what is in the file's place")
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep me" {
		t.Errorf("the links' target now holds %q (%v)", b, err)
	}
	for _, id := range []string{"a", "b", "c"} {
		path := filepath.Join(cfg.Dir, id+".pcap")
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
			t.Errorf("%s: %v, %v: want a file of its own", path, fi, err)
			continue
		}
		if _, _, recs := readPcap(t, path); len(recs) != 1 {
			t.Errorf("%s holds %d packets, want 1", path, len(recs))
		}
	}
	if s := ev.Stats(); s.Errors != 0 || s.Files != 3 {
		t.Errorf("stats %+v, want 3 files, no error; log %s", s, log)
	}
}
