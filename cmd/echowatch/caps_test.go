package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLiveFileCapabilities does what the Docker image does: the binary
// carries the file capability cap_net_raw, and a user without root captures
// with it, in promiscuous mode, in both capture modes. Without it (here,
// with cap_net_admin instead, which capture does not need) the error names
// what is missing. The image cannot be built here (no Docker engine), so
// its mechanism is tested instead.
func TestLiveFileCapabilities(t *testing.T) {
	for _, tc := range captureModes {
		for _, caps := range []string{"cap_net_raw+ep", "cap_net_admin+ep"} {
			t.Run(tc.name+"/"+caps, func(t *testing.T) {
				testFileCapabilities(t, tc.name, caps, tc.args)
			})
		}
	}
}

func testFileCapabilities(t *testing.T, mode, caps string, args []string) {
	sender, sensor := netnsPair(t, "fc"+mode[:2]+caps[8:10])
	setcap, err := exec.LookPath("setcap")
	if err != nil {
		t.Skip("needs setcap from libcap2-bin")
	}
	// A copy of the test binary that nobody may run, with the capability,
	// where file capabilities count (not a nosuid mount).
	dir, err := os.MkdirTemp("/tmp", "echowatch-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil || fs.Flags&0x2 != 0 { // ST_NOSUID
		t.Skip("/tmp is mounted nosuid: file capabilities do not apply there")
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "echowatch")
	copyFile(t, os.Args[0], bin, 0o755)
	if out, err := exec.Command(setcap, caps, bin).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		bin, "-i", "ew1", "--format", "eve", "--home-net", "198.18.0.0/30", "--stats", "--stats-interval", "200ms"}, args...)
	if caps != "cap_net_raw+ep" {
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", sensor}, argv...)...)
		cmd.Env = append(os.Environ(), "ECHOWATCH_AS_MAIN=1")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ew1: permission denied (capture needs root or CAP_NET_RAW)") {
			t.Fatalf("without cap_net_raw: %v: %s", err, out)
		}
		return
	}
	s := startSensorAs(ctx, t, sensor, argv)
	link, err := exec.Command("ip", "-n", sensor, "-d", "link", "show", "ew1").CombinedOutput()
	if err != nil || !regexpMust(`promiscuity [1-9]`).Match(link) {
		t.Errorf("ew1 is not promiscuous while the sensor runs: %v: %s", err, link)
	}
	sendReplies(ctx, t, sender)
	s.settle(t, 400)
	if err := s.stop(); err != nil {
		t.Fatalf("echowatch as nobody: %v\nstderr:\n%s", err, s.errors())
	}
	if out := s.stdout.String(); !strings.Contains(out, `"kind":"reflection","phase":"start"`) {
		t.Errorf("no reflection seen without root:\n%s\nstderr:\n%s", out, s.errors())
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
