package main

import (
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

// TestOutputMistakesAreUsageErrors: a mistake in an output's URL, or in
// the options the config file gives every output, exits 2 with one line
// that names --output and the URL, without its password.
func TestOutputMistakesAreUsageErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "echowatch.yaml")
	if err := os.WriteFile(conf, []byte("output_options:\n  kafka:\n    acks: most\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--output", "alerts.json"},
			`echowatch: --output "alerts.json": not a URL (want stdout, file:///path, syslog+udp|tcp|tls://host:port, syslog+unix:///path or kafka://broker:port/topic)`},
		{[]string{"--output", "kafka://u:pw@b1:9092/t?bogus=1"}, `echowatch: --output kafka://u:xxxxx@b1:9092/t?bogus=1: unknown option "bogus"`},
		{[]string{"--output", "syslog+tcp://c:514?ca=/etc/ssl/ca.pem"}, `echowatch: --output syslog+tcp://c:514?ca=/etc/ssl/ca.pem: ca, cert, key and server_name need syslog+tls`},
		{[]string{"--config", conf, "--output", "kafka://b1:9092/t"}, `echowatch: --output kafka://b1:9092/t: sinks/kafka: acks "most": want all, leader or none`},
	} {
		code, out, errOut := runMain(t, nil, append([]string{"-r", pcap("demo.pcap")}, c.args...)...)
		if want := c.msg + "\nTry 'echowatch --help' for more information.\n"; code != 2 || out != "" || errOut != want {
			t.Errorf("%q: exit %d, stderr %q; want exit 2, %q", c.args, code, errOut, want)
		}
	}
}

// TestOutputOptionsFromTheConfigFile: every key under output_options
// reaches the outputs' options.
func TestOutputOptionsFromTheConfigFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "echowatch.yaml")
	yaml := `read: [a.pcap]
output_options:
  queue_size: 7
  flush_timeout: 3s
  syslog: {format: cef, facility: local3, ca: /s/ca.pem, cert: /s/c.pem, key: /s/k.pem, server_name: logs.example.org}
  kafka:
    acks: leader
    compression: zstd
    sasl: PLAIN
    user: sensor
    password: pw
    password_file: /k/pw
    tls: true
    ca: /k/ca.pem
    cert: /k/c.pem
    key: /k/k.pem
    server_name: kafka.example.org
    auto_create: true
    batch_timeout: 2ms
`
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// The files named are not there: the options are read, not used.
	cfg, _, err := parseArgs([]string{"--config", conf, "--output", "stdout"}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	want := sinks.DefaultOptions()
	want.QueueSize, want.FlushTimeout = 7, 3*time.Second
	want.Syslog = sinks.SyslogOptions{Format: "cef", Facility: "local3",
		TLSFiles: sinks.TLSFiles{CA: "/s/ca.pem", Cert: "/s/c.pem", Key: "/s/k.pem", ServerName: "logs.example.org"}}
	want.Kafka = sinks.KafkaOptions{Acks: "leader", Compression: "zstd", SASL: "PLAIN", User: "sensor", Password: "pw",
		PasswordFile: "/k/pw", TLS: true, AutoCreate: true, BatchTimeout: 2 * time.Millisecond,
		TLSFiles: sinks.TLSFiles{CA: "/k/ca.pem", Cert: "/k/c.pem", Key: "/k/k.pem", ServerName: "kafka.example.org"}}
	if cfg.OutputOptions != want {
		t.Errorf("output_options:\n got %+v\nwant %+v", cfg.OutputOptions, want)
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
