package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLiveFileCapabilities does what the Docker image does: the binary
// carries the file capabilities cap_net_raw and cap_net_admin, and a user
// without root captures with it, in both capture modes. The image cannot be
// built here (no Docker engine), so its mechanism is tested instead.
func TestLiveFileCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"pcap", []string{"--capture", "pcap"}},
		{"afpacket", []string{"--capture", "afpacket", "--workers", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sender, sensor := netnsPair(t, "fc"+tc.name[:2])
			setcap, err := exec.LookPath("setcap")
			if err != nil {
				t.Skip("needs setcap from libcap2-bin")
			}
			// A copy of the test binary nobody may run, with the capabilities.
			dir, err := os.MkdirTemp("", "echowatch-caps-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(dir, "echowatch")
			copyFile(t, os.Args[0], bin, 0o755)
			if out, err := exec.Command(setcap, "cap_net_raw,cap_net_admin+ep", bin).CombinedOutput(); err != nil {
				t.Fatalf("setcap: %v: %s", err, out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			argv := append([]string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
				bin, "-i", "ew1", "--format", "eve", "--home-net", "198.18.0.0/30"}, tc.args...)
			s := startSensorAs(ctx, t, sensor, argv)
			send := exec.CommandContext(ctx, "ip", "netns", "exec", sender, os.Args[0], "7", "400", "400")
			send.Env = append(os.Environ(), "ECHOWATCH_AS_SENDER=198.18.0.2:40000")
			if out, err := send.CombinedOutput(); err != nil {
				t.Fatalf("sender: %v: %s", err, out)
			}
			time.Sleep(300 * time.Millisecond)
			if err := s.stop(); err != nil {
				t.Fatalf("echowatch as nobody: %v\nstderr:\n%s", err, s.errors())
			}
			if out := s.stdout.String(); !strings.Contains(out, `"kind":"reflection","phase":"start"`) {
				t.Errorf("no reflection seen without root:\n%s\nstderr:\n%s", out, s.errors())
			}
		})
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
