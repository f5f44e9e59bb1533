//go:build linux

package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	libpcap "github.com/gopacket/gopacket/pcap"
	"golang.org/x/sys/unix"
)

// TestEvidenceFullDisk runs a capture of 100 reflection incidents with
// --evidence-dir on a tmpfs of 64 KiB, which holds the evidence of a few
// (100 packets, some 12 KiB each): the disk fills while files are being
// written, in the midst of a record. No alert may name a
// file that is missing, empty, or not a whole pcap that libpcap reads to
// its end; no empty file may be left; and the files that fitted are kept.
func TestEvidenceFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root: full-disk evidence test skipped")
	}
	top := t.TempDir()
	dir := filepath.Join(top, "evidence")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot mount a tmpfs (no CAP_SYS_ADMIN): %v", err)
		}
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	data, _ := reflectionBursts(t, 100, 1)
	capture := filepath.Join(top, "capture.pcap")
	if err := os.WriteFile(capture, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMain(t, nil, "-r", capture, "--format", "eve", "--max-alerts-per-second", "0",
		"--end-after", "2s", "--evidence-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	named := map[string]int{} // file → alerts naming it
	starts, unnamed := 0, 0
	for _, ev := range evidenceAlerts(t, out) {
		if ev.Incident.Phase == "start" {
			starts++
			if ev.CaptureFile == "" {
				unnamed++
			}
		}
		if ev.CaptureFile != "" {
			named[ev.CaptureFile]++
		}
	}
	if starts != 100 {
		t.Fatalf("%d incidents, want 100", starts)
	}
	// The test means nothing unless the disk filled, and something fitted.
	if !strings.Contains(errOut, "no space left on device") || len(named) == 0 {
		t.Fatalf("%d files named, and the disk never filled? stderr:\n%s", len(named), errOut)
	}
	cut := 0 // files that hold fewer than the 100 packets wanted
	for path, n := range named {
		k := wholePcap(t, path)
		if k == 0 {
			t.Errorf("%d alerts name %s, which holds no packet", n, path)
		}
		if k < 100 {
			cut++
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if named[path] == 0 {
			t.Errorf("%s is left, and no alert names it", e.Name())
			continue
		}
	}
	// 100 files of 20 packets do not fit in 64 KiB.
	if unnamed == 0 {
		t.Errorf("every incident names a file on a disk that could not hold them all")
	}
	t.Logf("%d of %d incidents have evidence on the full disk (%d files left, %d cut short)", starts-unnamed, starts, len(entries), cut)
}

// wholePcap reads the capture file at path to its end with libpcap and
// returns how many packets it holds; it fails the test when the file is
// missing, is no pcap, or ends in a partial record.
func wholePcap(t *testing.T, path string) int {
	t.Helper()
	h, err := libpcap.OpenOffline(path)
	if err != nil {
		t.Errorf("libpcap cannot open %s: %v", path, err)
		return 0
	}
	defer h.Close()
	n := 0
	for {
		_, _, err := h.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Errorf("%s: after %d packets: %v", path, n, err)
			return n
		}
		n++
	}
}
