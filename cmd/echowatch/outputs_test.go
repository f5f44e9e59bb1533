package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

func parseOutput(raw string, o sinks.Options, w io.Writer) (string, sinks.Dialer, error) {
	out, err := sinks.ParseOutput(raw, o, w)
	return out.Name, out.Dialer, outputUsage(err)
}

func TestParseOutput(t *testing.T) {
	o := sinks.DefaultOptions()
	good := []struct{ url, name string }{
		{"stdout", "stdout"},
		{"file:///var/log/echowatch/alerts.json", "file:///var/log/echowatch/alerts.json"},
		{"file:///tmp/a.log?format=text", "file:///tmp/a.log?format=text"},
		{"syslog+udp://127.0.0.1:514", "syslog+udp://127.0.0.1:514"},
		{"syslog+tcp://collector?format=3164&facility=local3", "syslog+tcp://collector?format=3164&facility=local3"},
		{"syslog+tls://collector:6514?server_name=logs.example.org", "syslog+tls://collector:6514?server_name=logs.example.org"},
		{"syslog+udp://[::1]:514?format=cef", "syslog+udp://[::1]:514?format=cef"},
		{"syslog+unix:///dev/log", "syslog+unix:///dev/log"},
		{"kafka://b1:9092,b2:9092/alerts?acks=leader&compression=zstd", "kafka://b1:9092,b2:9092/alerts?acks=leader&compression=zstd"},
		{"kafka://sensor:s3cret@b1:9092/alerts?sasl=SCRAM-SHA-256&tls=true", "kafka://sensor:xxxxx@b1:9092/alerts?sasl=SCRAM-SHA-256&tls=true"},
		{"kafka://b1/alerts?auto_create=true&batch_timeout=2ms", "kafka://b1/alerts?auto_create=true&batch_timeout=2ms"},
	}
	for _, c := range good {
		name, d, err := parseOutput(c.url, o, os.Stdout)
		if err != nil || d == nil || name != c.name {
			t.Errorf("%s: %q, %v", c.url, name, err)
		}
	}
	bad := []struct{ url, msg string }{
		{"elastic://x", `unknown scheme "elastic"`},
		{"alerts.json", `not a URL`},
		{"file://host/x", `want file:///absolute/path`},
		{"file:///x?format=xml", `format "xml"`},
		{"syslog+tcp://c:514?fromat=3164", `unknown option "fromat"`},
		{"syslog+tcp://c:514?format=5425", `unknown format "5425"`},
		{"syslog+tcp://c:514?facility=kern", `unknown facility "kern"`},
		{"syslog+tcp://c:514?ca=/etc/ssl/ca.pem", `need syslog\+tls`},
		{"syslog+tls://c:6514?ca=/nonexistent.pem", `ca: open /nonexistent.pem`},
		{"syslog+tls://c:6514?cert=/x.pem", `cert and key go together`},
		{"syslog+unix://dev/log", `want syslog\+unix:///path`},
		{"syslog+sctp://c:514", `unknown scheme`},
		{"kafka://b1:9092", `no topic`},
		{"kafka://b1:9092/t?acks=2", `acks "2"`},
		{"kafka://b1:9092/t?compression=brotli", `compression "brotli"`},
		{"kafka://b1:9092/t?sasl=GSSAPI", `sasl mechanism "GSSAPI"`},
		{"kafka://b1:9092/t?auto_create=maybe", `auto_create="maybe"`},
		{"kafka://u:pw@b1:9092/t?bogus=1", `^--output kafka://u:xxxxx@b1:9092/t\?bogus=1: unknown option "bogus"$`},
		{"kafka://u:pw@b1:9092/t?password_file=/etc/pw", `password and password_file: give one or the other`},
		{"kafka://u@b1:9092/t?password_file=/nonexistent", `password_file: open /nonexistent: no such file`},
	}
	for _, c := range bad {
		_, _, err := parseOutput(c.url, o, os.Stdout)
		if _, usage := err.(*usageError); !usage || !regexp.MustCompile(c.msg).MatchString(err.Error()) {
			t.Errorf("%s: %v, want a usage error matching /%s/", c.url, err, c.msg)
		}
	}
}

func TestOutputsFromTheConfigFile(t *testing.T) {
	o := sinks.DefaultOptions()
	o.Kafka.SASL, o.Kafka.User, o.Kafka.Password = "PLAIN", "sensor", "from-file"
	o.Syslog.Format = "cef"
	// The query wins over the file's options.
	if _, _, err := parseOutput("syslog+udp://c:514?format=bogus", o, nil); err == nil {
		t.Error("the query did not override the file's syslog format")
	}
	if _, _, err := parseOutput("kafka://b:9092/t?sasl=NOPE", o, nil); err == nil {
		t.Error("the query did not override the file's SASL mechanism")
	}
	if _, _, err := parseOutput("kafka://b:9092/t", o, nil); err != nil {
		t.Error(err)
	}
}

// TestOutputsFanOut writes to standard output and a file at once through
// the API main uses, and checks SIGHUP's reopen after logrotate.
func TestOutputsFanOut(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alerts.json")
	var stdout bytes.Buffer
	o := sinks.DefaultOptions()
	outs, err := openOutputs(context.Background(), []string{"stdout", "file://" + path}, o, &stdout, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		outs.WriteAlert(sinkstest.Alert(1, i))
	}
	waitFor(t, func() bool { return len(readLines(t, path)) == 5 })
	// logrotate: move the file away, then SIGHUP.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	outs.Reopen()
	for i := 5; i < 8; i++ {
		outs.WriteAlert(sinkstest.Alert(1, i))
	}
	if err := outs.Close(); err != nil || outs.Lost() != 0 {
		t.Fatalf("Close: %v, lost %d", err, outs.Lost())
	}
	if err := outs.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if old, cur := readLines(t, path+".1"), readLines(t, path); len(old) != 5 || len(cur) != 3 {
		t.Fatalf("rotated file has %d alerts, new one %d; want 5 and 3", len(old), len(cur))
	}
	if n := strings.Count(stdout.String(), "\n"); n != 8 {
		t.Fatalf("stdout got %d alerts", n)
	}
	for _, s := range outs.Stats() {
		if s.Produced != 8 || s.Delivered != 8 {
			t.Errorf("%s: %+v", s.Name, s.QueueStats)
		}
	}
}

func TestOutputsStartupErrors(t *testing.T) {
	k := sinkstest.StartKafka(t, "", 0)
	_, err := openOutputs(context.Background(), []string{"stdout", "kafka://" + k.Addr + "/missing"}, sinks.DefaultOptions(), &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), `topic "missing" does not exist`) {
		t.Errorf("missing topic: %v", err)
	}
	_, err = openOutputs(context.Background(), []string{"file:///nonexistent-dir/alerts.json"}, sinks.DefaultOptions(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("file in a missing directory: %v", err)
	}
}

// TestOutputsEndToEnd runs the sensor on a bundled capture with a file,
// syslog over TCP, Kafka and standard output at once: each gets the same
// alerts as a run to standard output alone.
func TestOutputsEndToEnd(t *testing.T) {
	demo := pcap("demo.pcap")
	code, want, errOut := runMain(t, nil, "-r", demo, "--format", "eve", "--sensor-name", "sensor-e2e")
	if code != 0 || errOut != "" {
		t.Fatalf("reference run: exit %d, %s", code, errOut)
	}
	wantLines := strings.Split(strings.TrimSpace(want), "\n")
	for _, l := range wantLines {
		if !strings.Contains(l, `"host":"sensor-e2e"`) {
			t.Fatalf("alert without the sensor's name: %s", l)
		}
	}

	r := sinkstest.StartRsyslog(t, "tcp")
	k := sinkstest.StartKafka(t, "alerts", 3)
	file := filepath.Join(t.TempDir(), "alerts.json")
	code, out, errOut := runMain(t, nil, "-r", demo, "--format", "eve", "--sensor-name", "sensor-e2e",
		"--output", "stdout",
		"--output", "file://"+file,
		"--output", "syslog+tcp://"+r.Addr,
		"--output", "kafka://"+k.Addr+"/"+k.Topic)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if out != want {
		t.Errorf("stdout differs from the reference run")
	}
	if got := readLines(t, file); !slices.Equal(got, wantLines) {
		t.Errorf("file got %d alerts, want the %d of the reference run", len(got), len(wantLines))
	}
	var viaSyslog []string
	for _, m := range r.WaitMessages(len(wantLines), 10*time.Second) {
		viaSyslog = append(viaSyslog, m.Msg)
		if m.Hostname != "sensor-e2e" || m.AppName != "echowatch" {
			t.Errorf("syslog header %+v", m)
		}
	}
	if !slices.Equal(viaSyslog, wantLines) {
		t.Errorf("syslog got %d alerts, want the %d of the reference run", len(viaSyslog), len(wantLines))
	}
	// Kafka keeps order per incident, not across them: compare as sets,
	// and check each incident's order.
	var viaKafka []string
	for _, rec := range k.Records(len(wantLines), 10*time.Second) {
		viaKafka = append(viaKafka, string(rec.Value))
	}
	if !sameSet(viaKafka, wantLines) {
		t.Errorf("kafka got %d alerts, want the %d of the reference run", len(viaKafka), len(wantLines))
	}
	checkIncidentOrder(t, viaKafka, wantLines)
}

// TestOfflineRunFailsWhenOutputsCannotDeliver: a capture replayed to a
// collector that is not there exits non-zero and says how much was lost.
func TestOfflineRunFailsWhenOutputsCannotDeliver(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	start := time.Now()
	code, _, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--output", "syslog+tcp://"+addr, "--flush-timeout", "500ms")
	if code != 1 || !regexp.MustCompile(`syslog\+tcp://127\.0\.0\.1:\d+: \d+ of \d+ events not delivered`).MatchString(errOut) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v with a flush timeout of 500ms", d)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// checkIncidentOrder checks that each incident's alerts in got come in
// the order they have in want.
func checkIncidentOrder(t *testing.T, got, want []string) {
	t.Helper()
	incident := regexp.MustCompile(`"incident":\{"id":"([^"]+)"`)
	byID := func(lines []string) map[string][]string {
		m := map[string][]string{}
		for _, l := range lines {
			if id := incident.FindStringSubmatch(l); id != nil {
				m[id[1]] = append(m[id[1]], l)
			}
		}
		return m
	}
	g := byID(got)
	for id, w := range byID(want) {
		if !slices.Equal(g[id], w) {
			t.Errorf("incident %s: alerts out of order", id)
		}
	}
}

// readLines returns the lines of path so far; none if it cannot be read.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	lines, _ := sinkstest.FileLines(path)
	return lines
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKafkaPasswordOffTheCommandLine: the SASL password can come from a
// file or from the environment, so that ps does not show it, and either
// authenticates for real.
func TestKafkaPasswordOffTheCommandLine(t *testing.T) {
	k := sinkstest.StartKafka(t, "alerts", 1, sinkstest.WithSASL("SCRAM-SHA-256", "sensor", "s3cret"))
	k.ConsumerOpts(kgo.SASL(scram.Auth{User: "sensor", Pass: "s3cret"}.AsSha256Mechanism()))
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("guess\n"), 0o600)
	base := "kafka://sensor@" + k.Addr + "/alerts?sasl=SCRAM-SHA-256"
	run := func(url string) (int, string) {
		code, _, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--output", url, "--flush-timeout", "2s")
		return code, errOut
	}
	if code, errOut := run(base + "&password_file=" + pwFile); code != 0 {
		t.Fatalf("password_file: exit %d: %s", code, errOut)
	}
	t.Setenv(sinks.KafkaPasswordEnv, "s3cret")
	if code, errOut := run(base); code != 0 {
		t.Fatalf("%s: exit %d: %s", sinks.KafkaPasswordEnv, code, errOut)
	}
	if got := k.Records(2*demoAlerts, 10*time.Second); len(got) != 2*demoAlerts {
		t.Fatalf("the broker has %d records, want %d", len(got), 2*demoAlerts)
	}
	// A file wins over the environment, and a wrong password is refused.
	if code, errOut := run(base + "&password_file=" + wrong); code != 1 || !strings.Contains(errOut, "authentication failed") || strings.Contains(errOut, "guess") {
		t.Fatalf("a wrong password in the file: exit %d: %s", code, errOut)
	}
}
