package sinkstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Rsyslog is a real rsyslogd that a test starts on loopback, with its own
// configuration and work directory. It writes every message it receives
// as one JSON line of the fields it parsed, so a test checks what rsyslog
// understood rather than the bytes we sent.
type Rsyslog struct {
	// Network is "udp", "tcp", "tls" or "unix"; Addr is 127.0.0.1:port or
	// the socket's path.
	Network, Addr string
	// Certs are the TLS listener's, for "tls".
	Certs *Certs

	t    testing.TB
	dir  string
	conf string
	out  string
	cmd  *exec.Cmd
	exit chan struct{}
}

// SyslogMessage is what rsyslog parsed out of one message.
type SyslogMessage struct {
	PRI      string `json:"pri"`
	Severity string `json:"severity"`
	Facility string `json:"facility"`
	Version  string `json:"version"`
	Time     string `json:"time"`
	Hostname string `json:"hostname"`
	AppName  string `json:"appname"`
	ProcID   string `json:"procid"`
	MsgID    string `json:"msgid"`
	SD       string `json:"sd"`
	Tag      string `json:"tag"`
	Msg      string `json:"msg"`
	Raw      string `json:"raw"` // the message as received
}

// rsyslogTemplate writes the parsed fields of each message as JSON.
const rsyslogTemplate = `template(name="fields" type="list") {
  constant(value="{\"pri\":\"") property(name="pri")
  constant(value="\",\"severity\":\"") property(name="syslogseverity")
  constant(value="\",\"facility\":\"") property(name="syslogfacility")
  constant(value="\",\"version\":\"") property(name="protocol-version" format="json")
  constant(value="\",\"time\":\"") property(name="timereported" dateFormat="rfc3339" format="json")
  constant(value="\",\"hostname\":\"") property(name="hostname" format="json")
  constant(value="\",\"appname\":\"") property(name="app-name" format="json")
  constant(value="\",\"procid\":\"") property(name="procid" format="json")
  constant(value="\",\"msgid\":\"") property(name="msgid" format="json")
  constant(value="\",\"sd\":\"") property(name="structured-data" format="json")
  constant(value="\",\"tag\":\"") property(name="syslogtag" format="json")
  constant(value="\",\"msg\":\"") property(name="msg" format="json")
  constant(value="\",\"raw\":\"") property(name="rawmsg" format="json")
  constant(value="\"}\n")
}
`

// RsyslogPath returns rsyslogd's path, skipping the test when it is not
// installed (Debian: apt-get install rsyslog; scripts/deps.sh does).
func RsyslogPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p
	}
	t.Skip("rsyslogd is not installed (apt-get install rsyslog): syslog tests skipped")
	return ""
}

// rsyslogModule reports whether rsyslog has a loadable module.
func rsyslogModule(name string) bool {
	m, _ := filepath.Glob("/usr/lib/*/rsyslog/" + name + ".so")
	if len(m) == 0 {
		m, _ = filepath.Glob("/usr/lib/rsyslog/" + name + ".so")
	}
	return len(m) > 0
}

// StartRsyslog starts rsyslogd listening on network. It skips the test
// when rsyslogd, or its TLS driver for "tls" (rsyslog-gnutls), is missing.
func StartRsyslog(t testing.TB, network string) *Rsyslog {
	t.Helper()
	bin := RsyslogPath(t)
	if network == "tls" && !rsyslogModule("lmnsd_gtls") {
		t.Skip("rsyslog's TLS driver is not installed (apt-get install rsyslog-gnutls): syslog TLS tests skipped")
	}
	// rsyslog's unix socket path must be short; t.TempDir can be long.
	dir, err := os.MkdirTemp("", "rsyslog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &Rsyslog{Network: network, t: t, dir: dir, conf: filepath.Join(dir, "rsyslog.conf"), out: filepath.Join(dir, "out.jsonl")}
	var conf strings.Builder
	global := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="256k"`, dir)
	switch network {
	case "udp":
		r.Addr = freePort(t, "udp")
		fmt.Fprintf(&conf, "%s)\nmodule(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=%q rcvbufSize=\"16m\" ruleset=\"out\")\n", global, port(r.Addr))
	case "tcp":
		r.Addr = freePort(t, "tcp")
		fmt.Fprintf(&conf, "%s)\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=%q ruleset=\"out\")\n", global, port(r.Addr))
	case "tls":
		r.Addr = freePort(t, "tcp")
		r.Certs = NewCerts(t)
		fmt.Fprintf(&conf, "%s DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=%q DefaultNetstreamDriverCertFile=%q DefaultNetstreamDriverKeyFile=%q)\n",
			global, r.Certs.CA, r.Certs.ServerCert, r.Certs.ServerKey)
		fmt.Fprintf(&conf, "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n")
		fmt.Fprintf(&conf, "input(type=\"imtcp\" address=\"127.0.0.1\" port=%q ruleset=\"out\")\n", port(r.Addr))
	case "unix":
		r.Addr = filepath.Join(dir, "log.sock")
		fmt.Fprintf(&conf, "%s)\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\n", global)
		// The regular parsers, not the one for local programs that leave
		// the host name out; and no rate limit.
		fmt.Fprintf(&conf, "input(type=\"imuxsock\" Socket=%q UseSpecialParser=\"off\" ParseHostname=\"on\" RateLimit.Interval=\"0\" ruleset=\"out\")\n", r.Addr)
	default:
		t.Fatalf("sinkstest: unknown syslog network %q", network)
	}
	conf.WriteString(rsyslogTemplate)
	fmt.Fprintf(&conf, "ruleset(name=\"out\") {\n  action(type=\"omfile\" file=%q template=\"fields\")\n}\n", r.out)
	if err := os.WriteFile(r.conf, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-N1", "-f", r.conf).CombinedOutput(); err != nil {
		t.Fatalf("sinkstest: rsyslog rejects its configuration: %v\n%s\n%s", err, out, conf.String())
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts rsyslogd (again) on the same address and waits until it
// takes messages.
func (r *Rsyslog) Start() {
	r.t.Helper()
	if r.cmd != nil {
		return
	}
	bin := RsyslogPath(r.t)
	logf, err := os.OpenFile(filepath.Join(r.dir, "rsyslogd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("sinkstest: start rsyslogd: %v", err)
	}
	r.cmd, r.exit = cmd, make(chan struct{})
	go func(exit chan struct{}) { cmd.Wait(); close(exit) }(r.exit)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if r.ready() {
			return
		}
		select {
		case <-r.exit:
			log, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.log"))
			r.cmd = nil
			r.t.Fatalf("sinkstest: rsyslogd exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("sinkstest: rsyslogd did not start listening on %s %s", r.Network, r.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready tells whether rsyslog takes messages: a connection for TCP and
// TLS, a probe message that shows up for datagrams.
func (r *Rsyslog) ready() bool {
	switch r.Network {
	case "tcp", "tls":
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	network := "udp"
	if r.Network == "unix" {
		network = "unixgram"
	}
	c, err := net.Dial(network, r.Addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.Write([]byte("<14>1 2024-01-01T00:00:00Z probe probe - probe - probe"))
	time.Sleep(20 * time.Millisecond)
	data, _ := os.ReadFile(r.out)
	return bytes.Contains(data, []byte(`"msgid":"probe"`))
}

// Stop stops rsyslogd, as a service manager would (SIGTERM).
func (r *Rsyslog) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exit:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exit
	}
	r.cmd = nil
}

// Messages returns what rsyslog wrote so far, probes left out.
func (r *Rsyslog) Messages() []SyslogMessage {
	r.t.Helper()
	lines, err := FileLines(r.out)
	if err != nil {
		r.t.Fatal(err)
	}
	var msgs []SyslogMessage
	for _, l := range lines {
		var m SyslogMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			continue // a line being written
		}
		if m.MsgID == "probe" {
			continue
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// WaitMessages waits up to timeout for n distinct messages and returns
// what there is then. Copies do not count: after a reconnection a sender
// sends again what was not settled, and they would make up the count
// before the last messages arrive.
func (r *Rsyslog) WaitMessages(n int, timeout time.Duration) []SyslogMessage {
	deadline := time.Now().Add(timeout)
	for {
		msgs := r.Messages()
		texts := make([]string, len(msgs))
		for i, m := range msgs {
			texts[i] = m.Msg
		}
		if distinct(texts) >= n || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
