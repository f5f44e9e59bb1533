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

// TestLiveFileCapabilities does what the image does where NET_RAW is
// granted (docker run --cap-drop ALL --cap-add NET_RAW): the binary carries
// the file capability cap_net_raw=p, without the effective bit, a user
// without root runs it with NET_RAW alone in the bounding set, and it
// captures, in promiscuous mode, in both capture modes. Without the
// capability (here, with cap_net_admin instead, which capture does not
// need) the error names what is missing. The image cannot be built here
// (no container engine and no registry), so its mechanism is tested.
func TestLiveFileCapabilities(t *testing.T) {
	for _, tc := range captureModes {
		for _, caps := range []string{"cap_net_raw=p", "cap_net_admin=p"} {
			t.Run(tc.name+"/"+caps, func(t *testing.T) {
				testFileCapabilities(t, tc.name, caps, tc.args)
			})
		}
	}
}

func testFileCapabilities(t *testing.T, mode, caps string, args []string) {
	sender, sensor := netnsPair(t, "fc"+mode[:2]+caps[8:10])
	bin := binaryWithCaps(t, caps)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(asNobody("-all,+net_raw", bin, "-i", "ew1", "--format", "eve", "--home-net", "198.18.0.0/30",
		"--stats", "--stats-interval", "200ms"), args...)
	if caps != "cap_net_raw=p" {
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

// TestNoCapabilities runs the binary as the image does where nothing is
// granted (docker run --cap-drop ALL, a Kubernetes pod that drops ALL):
// as a user without root and with an empty bounding set. A file capability
// with the effective bit would make the kernel refuse to run it at all
// (the first case, as before); the image's, without it, reads capture
// files as ever, and a live capture says what it lacks.
func TestNoCapabilities(t *testing.T) {
	demo, err := filepath.Abs(pcap("demo.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	old := binaryWithCaps(t, "cap_net_raw=ep")
	argv := asNobody("-all", old, "-r", demo)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Fatalf("an effective file capability outside the bounding set: %v: %s", err, out)
	}
	bin := binaryWithCaps(t, "cap_net_raw=p")
	run := func(args ...string) (string, error) {
		argv := asNobody("-all", bin, args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "ECHOWATCH_AS_MAIN=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("-r", demo, "--format", "eve"); err != nil || strings.Count(out, `"event_type":"alert"`) != 8 {
		t.Errorf("-r with no capability: %v:\n%s", err, out)
	}
	if out, err := run("-i", "lo"); err == nil || !strings.Contains(out, "lo: permission denied (capture needs root or CAP_NET_RAW)") {
		t.Errorf("-i with no capability: %v: %s", err, out)
	}
}

// binaryWithCaps returns a copy of the test binary that anybody may run,
// with the file capabilities caps (setcap's syntax), where file
// capabilities count (not a nosuid mount).
func binaryWithCaps(t *testing.T, caps string) string {
	t.Helper()
	setcap, err := exec.LookPath("setcap")
	if err != nil {
		t.Skip("needs setcap from libcap2-bin")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv from util-linux")
	}
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
	return bin
}

// asNobody returns the command line that runs bin with args as user
// nobody, with the capability bounding set bounding (setpriv's syntax:
// "-all", "-all,+net_raw"), as a container runtime that drops the rest
// would.
func asNobody(bounding, bin string, args ...string) []string {
	return append([]string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		"--bounding-set=" + bounding, "--inh-caps=-all", bin}, args...)
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
