package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// demoAlerts is how many alerts pcaps/demo.pcap gives: a start and an end
// of each of its four incidents.
const demoAlerts = 8

// TestOutputsAsUser runs echowatch as root with --user nobody, as the
// README's hardening advice says, with each kind of output: every one is
// opened as nobody and delivers every alert, and one that nobody cannot
// write is an error at start-up that names the destination and the user.
func TestOutputsAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run echowatch --user nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	// A folder nobody owns, and one only root may write, both reachable.
	dir, err := os.MkdirTemp("", "echowatch-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "nobody")
	roots := filepath.Join(dir, "root")
	for _, d := range []string{mine, roots} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(mine, uid, gid); err != nil {
		t.Fatal(err)
	}

	t.Run("stdout", func(t *testing.T) {
		code, stdout, stderr := runAsUser(t, "nobody")
		if code != 0 || strings.Count(stdout, `"event_type":"alert"`) != demoAlerts {
			t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(mine, "eve.json")
		code, _, stderr := runAsUser(t, "nobody", "--output", "file://"+path)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, stderr)
		}
		b, err := os.ReadFile(path)
		if err != nil || bytes.Count(b, []byte(`"event_type":"alert"`)) != demoAlerts {
			t.Fatalf("%s: %v:\n%s\nstderr:\n%s", path, err, b, stderr)
		}
		st, _ := os.Stat(path)
		if owner := st.Sys().(*syscall.Stat_t).Uid; int(owner) != uid {
			t.Errorf("%s belongs to uid %d, not nobody's %d", path, owner, uid)
		}
	})
	t.Run("file-not-writable", func(t *testing.T) {
		path := filepath.Join(roots, "eve.json")
		code, stdout, stderr := runAsUser(t, "nobody", "--output", "file://"+path)
		if code != 1 || !strings.Contains(stderr, path) || !strings.Contains(stderr, "permission denied") ||
			!strings.Contains(stderr, "running as user nobody") || stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s was made", path)
		}
	})
	t.Run("summary-not-writable", func(t *testing.T) {
		path := filepath.Join(roots, "summary.json")
		code, stdout, stderr := runAsUser(t, "nobody", "--summary", path)
		if code != 1 || !strings.Contains(stderr, "--summary: open "+path+": permission denied (running as user nobody)") || stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
		}
	})
	for _, network := range []string{"udp", "tcp", "tls", "unix"} {
		t.Run("syslog+"+network, func(t *testing.T) {
			rs := sinkstest.StartRsyslog(t, network)
			u := "syslog+" + network + "://" + rs.Addr
			switch network {
			case "unix":
				// The socket's folder is root's own: open it to nobody.
				if err := os.Chmod(filepath.Dir(rs.Addr), 0o755); err != nil {
					t.Fatal(err)
				}
				u = "syslog+unix://" + rs.Addr
			case "tls":
				// The CA is read as nobody: first from where only root
				// may read it, then from a copy nobody may read.
				code, _, stderr := runAsUser(t, "nobody", "--output", u+"?ca="+url.QueryEscape(rs.Certs.CA))
				if code != 1 || !strings.Contains(stderr, rs.Certs.CA+": permission denied") ||
					!strings.Contains(stderr, "running as user nobody") {
					t.Fatalf("CA only root may read: exit %d:\n%s", code, stderr)
				}
				ca := filepath.Join(mine, "ca.pem")
				copyFile(t, rs.Certs.CA, ca, 0o644)
				u += "?ca=" + url.QueryEscape(ca)
			}
			code, _, stderr := runAsUser(t, "nobody", "--output", u)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			if got := rs.WaitMessages(demoAlerts, 10*time.Second); len(got) != demoAlerts {
				t.Fatalf("rsyslog got %d messages, want %d\nstderr:\n%s", len(got), demoAlerts, stderr)
			}
		})
	}
	t.Run("kafka", func(t *testing.T) {
		k := sinkstest.StartKafka(t, "alerts", 1)
		code, _, stderr := runAsUser(t, "nobody", "--output", "kafka://"+k.Addr+"/alerts")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, stderr)
		}
		if got := k.Records(demoAlerts, 10*time.Second); len(got) != demoAlerts {
			t.Fatalf("kafka got %d records, want %d\nstderr:\n%s", len(got), demoAlerts, stderr)
		}
	})
}

// runAsUser runs echowatch on the demo capture in a process of its own,
// started as root, with --user name and args.
func runAsUser(t *testing.T, name string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{"-r", pcap("demo.pcap"), "--format", "eve", "--user", name}, args...)
	cmd := exec.CommandContext(ctx, os.Args[0], argv...)
	cmd.Env = append(os.Environ(), "ECHOWATCH_AS_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatalf("echowatch: %v", err)
	}
	return 0, out.String(), errb.String()
}
