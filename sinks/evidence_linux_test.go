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

// mountFull makes path /dev/full (a bind mount, not a link) until the test
// ends; it skips the test where it cannot.
func mountFull(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/dev/full", path, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount /dev/full (needs root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(path, 0) })
}

// TestEvidenceWriteError writes to /dev/full mounted over the evidence
// files: every write fails with ENOSPC, as on a full disk.
func TestEvidenceWriteError(t *testing.T) {
	cfg := evidenceConfig(t)
	for _, id := range []string{"a", "b", "c"} {
		mountFull(t, filepath.Join(cfg.Dir, id+".pcap"))
	}
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

// TestEvidenceNoFollow: an evidence file is never written through a
// symbolic link someone put in the directory in its place; the link's
// target stays as it was, and the failure is counted and logged.
func TestEvidenceNoFollow(t *testing.T) {
	cfg := evidenceConfig(t)
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(cfg.Dir, "a.pcap")); err != nil {
		t.Fatal(err)
	}
	ev, log := newEvidence(t, cfg)
	if f := ev.Create("a", layers.LinkTypeEthernet); f != nil {
		t.Fatalf("Create through a link gave %s", f.Name())
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep me" {
		t.Errorf("the link's target now holds %q (%v)", b, err)
	}
	if s := ev.Stats(); s.Errors != 1 || s.Files != 0 {
		t.Errorf("stats %+v, want 1 error, no file", s)
	}
	if !strings.Contains(log.String(), "sinks/evidence: create:") || !strings.Contains(log.String(), syscall.ELOOP.Error()) {
		t.Errorf("log %q, want the create failure, a link", log)
	}
	create(t, ev, "b").Close() // other ids are unaffected
}
