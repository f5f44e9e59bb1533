//go:build linux

package sinks_test

import (
	"errors"
	"os"
	"path/filepath"
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

// TestEvidenceWriteError writes evidence to a disk that is full after the
// first 16 KiB: writes fail with ENOSPC.
func TestEvidenceWriteError(t *testing.T) {
	cfg := evidenceConfig(t)
	mountTiny(t, cfg.Dir)
	ev, log := newEvidence(t, cfg)
	t0 := time.Unix(1700000000, 0)
	for _, id := range []string{"a", "b"} {
		f := create(t, ev, id)
		// Larger than the buffer: it reaches the disk at once.
		if f.WritePacket(frame(t0, 40000, 40000)) {
			t.Fatalf("%s: a failed write returned true", id)
		}
		if f.WritePacket(frame(t0, 60, 60)) {
			t.Fatalf("%s: a write after a failed one returned true", id)
		}
		f.Close()
	}
	// A small packet stays in the buffer: the failure comes at the end.
	f := create(t, ev, "c")
	if !f.WritePacket(frame(t0, 60, 60)) {
		t.Fatal("c: a buffered write returned false")
	}
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
	if s := ev.Stats(); s.Errors != 3 || s.Packets != 1 {
		t.Errorf("stats %+v, want 3 errors, 1 packet", s)
	}
	// One line for the write failures, one for the close failure.
	if n := logLines(log); n != 2 || !strings.Contains(log.String(), "no space left on device") {
		t.Errorf("%d log lines, want 2:\n%s", n, log)
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
