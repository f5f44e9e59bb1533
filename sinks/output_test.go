package sinks_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/echowatch/echowatch/sinks"
)

// TestParseOutput: each kind of URL makes its destination, under a name
// without the password.
func TestParseOutput(t *testing.T) {
	for _, c := range []struct {
		url, name string
		dialer    sinks.Dialer // its type
	}{
		{"stdout", "stdout", &sinks.Writer{}},
		{"-", "stdout", &sinks.Writer{}},
		{"file:///var/log/echowatch/alerts.json", "file:///var/log/echowatch/alerts.json", &sinks.File{}},
		{"file://localhost/tmp/a.log?format=text", "file://localhost/tmp/a.log?format=text", &sinks.File{}},
		{"syslog+udp://127.0.0.1:514", "syslog+udp://127.0.0.1:514", &sinks.Syslog{}},
		{"syslog+tcp://collector?format=3164&facility=local3", "syslog+tcp://collector?format=3164&facility=local3", &sinks.Syslog{}},
		{"syslog+tls://collector:6514?server_name=logs.example.org", "syslog+tls://collector:6514?server_name=logs.example.org", &sinks.Syslog{}},
		{"syslog+udp://[::1]:514?format=cef", "syslog+udp://[::1]:514?format=cef", &sinks.Syslog{}},
		{"syslog+unix:///dev/log", "syslog+unix:///dev/log", &sinks.Syslog{}},
		{"kafka://b1:9092,b2:9092/alerts?acks=leader&compression=zstd", "kafka://b1:9092,b2:9092/alerts?acks=leader&compression=zstd", &sinks.Kafka{}},
		{"kafka://sensor:s3cret@b1:9092/alerts?sasl=SCRAM-SHA-256&tls=true", "kafka://sensor:xxxxx@b1:9092/alerts?sasl=SCRAM-SHA-256&tls=true", &sinks.Kafka{}},
		{"kafka://sensor@b1/alerts?password=s3cret", "kafka://sensor@b1/alerts?password=xxxxx", &sinks.Kafka{}},
		{"kafka://b1/alerts?auto_create=true&batch_timeout=2ms", "kafka://b1/alerts?auto_create=true&batch_timeout=2ms", &sinks.Kafka{}},
		{"kafka://b1/alerts?auto_create=true&partitions=6&replication_factor=3", "kafka://b1/alerts?auto_create=true&partitions=6&replication_factor=3", &sinks.Kafka{}},
	} {
		out, err := sinks.ParseOutput(c.url, sinks.DefaultOptions(), os.Stdout)
		if err != nil || out.Name != c.name || reflect.TypeOf(out.Dialer) != reflect.TypeOf(c.dialer) {
			t.Errorf("%s: %q, %T, %v; want %q, %T", c.url, out.Name, out.Dialer, err, c.name, c.dialer)
		}
	}
}

// TestParseOutputErrors: a mistake is a URLError that names the output
// (without its password) and says what is wrong, found before anything
// connects. main shows these words behind "--output ".
func TestParseOutputErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	empty := filepath.Join(dir, "password")
	for _, p := range []string{notPEM, empty} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ url, msg string }{
		{"elastic://x", `elastic://x: unknown scheme "elastic" (want stdout, file, syslog+udp, syslog+tcp, syslog+tls, syslog+unix or kafka)`},
		{"alerts.json", `"alerts.json": not a URL (want stdout, file:///path, syslog+udp|tcp|tls://host:port, syslog+unix:///path or kafka://broker:port/topic)`},
		{"file://host/x", `file://host/x: want file:///absolute/path`},
		{"file:///x?format=xml", `file:///x?format=xml: format "xml": want eve or text`},
		{"file:///x?bogus=1", `file:///x?bogus=1: unknown option "bogus"`},
		{"syslog+tcp://c:514?fromat=3164", `syslog+tcp://c:514?fromat=3164: unknown option "fromat"`},
		{"syslog+tcp://c:514?format=5425", `syslog+tcp://c:514?format=5425: sinks/syslog: unknown format "5425" (want 5424, 3164 or cef)`},
		{"syslog+tcp://c:514?facility=kern", `syslog+tcp://c:514?facility=kern: sinks/syslog: unknown facility "kern" (want local0 to local7, user, daemon, auth, security, or 1 to 23)`},
		{"syslog+tcp://c:514?ca=/etc/ssl/ca.pem", `syslog+tcp://c:514?ca=/etc/ssl/ca.pem: ca, cert, key and server_name need syslog+tls`},
		{"syslog+udp://c:514?key=/k.pem", `syslog+udp://c:514?key=/k.pem: ca, cert, key and server_name need syslog+tls`},
		{"syslog+tls://c:6514?ca=/nonexistent.pem", `syslog+tls://c:6514?ca=/nonexistent.pem: ca: open /nonexistent.pem: no such file or directory`},
		{"syslog+tls://c:6514?ca=" + notPEM, `syslog+tls://c:6514?ca=` + notPEM + `: ca ` + notPEM + `: no PEM certificate in it`},
		{"syslog+tls://c:6514?cert=/x.pem", `syslog+tls://c:6514?cert=/x.pem: cert and key go together`},
		{"syslog+tls://c:6514?cert=/x.pem&key=/y.pem", `syslog+tls://c:6514?cert=/x.pem&key=/y.pem: cert: open /x.pem: no such file or directory`},
		{"syslog+unix://dev/log", `syslog+unix://dev/log: want syslog+unix:///path/to/socket`},
		{"syslog+sctp://c:514", `syslog+sctp://c:514: unknown scheme "syslog+sctp" (want stdout, file, syslog+udp, syslog+tcp, syslog+tls, syslog+unix or kafka)`},
		{"syslog+udp://h:99999", `syslog+udp://h:99999: port "99999": want a number from 1 to 65535`},
		{"syslog+udp://h:0", `syslog+udp://h:0: port "0": want a number from 1 to 65535`},
		{"kafka://b1:9092", `kafka://b1:9092: no topic: want kafka://broker:9092[,broker2:9092]/topic`},
		{"kafka://b1:9092/a/b", `kafka://b1:9092/a/b: sinks/kafka: bad topic "a/b"`},
		{"kafka://b1:9092,b2:70000/t", `kafka://b1:9092,b2:70000/t: broker b2:70000: port "70000": want a number from 1 to 65535`},
		{"kafka://b1:9092/t?acks=2", `kafka://b1:9092/t?acks=2: sinks/kafka: acks "2": want all, leader or none`},
		{"kafka://b1:9092/t?compression=brotli", `kafka://b1:9092/t?compression=brotli: sinks/kafka: compression "brotli": want none, gzip, snappy, lz4 or zstd`},
		{"kafka://b1:9092/t?sasl=GSSAPI", `kafka://b1:9092/t?sasl=GSSAPI: sinks/kafka: sasl mechanism "GSSAPI": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"kafka://b1:9092/t?auto_create=maybe", `kafka://b1:9092/t?auto_create=maybe: auto_create="maybe": want true or false`},
		{"kafka://b1:9092/t?auto_create=true&partitions=0", `kafka://b1:9092/t?auto_create=true&partitions=0: partitions="0": want a number from 1`},
		{"kafka://b1:9092/t?replication_factor=x", `kafka://b1:9092/t?replication_factor=x: replication_factor="x": want a number from 1`},
		{"kafka://b1:9092/t?tls=yes", `kafka://b1:9092/t?tls=yes: tls="yes": want true or false`},
		{"kafka://b1:9092/t?batch_timeout=-1s", `kafka://b1:9092/t?batch_timeout=-1s: batch_timeout="-1s": want a duration such as 5ms`},
		{"kafka://b1:9092/t?server_name=x&ca=/nonexistent", `kafka://b1:9092/t?server_name=x&ca=/nonexistent: ca: open /nonexistent: no such file or directory`},
		{"kafka://u:pw@b1:9092/t?bogus=1", `kafka://u:xxxxx@b1:9092/t?bogus=1: unknown option "bogus"`},
		{"kafka://b1:9092/t?password=pw&bogus=1", `kafka://b1:9092/t?bogus=1&password=xxxxx: unknown option "bogus"`},
		{"kafka://u:pw@b1:9092/t?password_file=/etc/pw", `kafka://u:xxxxx@b1:9092/t?password_file=/etc/pw: password and password_file: give one or the other`},
		{"kafka://u@b1:9092/t?password_file=/nonexistent", `kafka://u@b1:9092/t?password_file=/nonexistent: password_file: open /nonexistent: no such file or directory`},
		{"kafka://u@b1:9092/t?password_file=" + empty, `kafka://u@b1:9092/t?password_file=` + empty + `: password_file ` + empty + `: empty`},
	} {
		_, err := sinks.ParseOutput(c.url, sinks.DefaultOptions(), os.Stdout)
		var ue *sinks.URLError
		if !errors.As(err, &ue) || err.Error() != c.msg {
			t.Errorf("%s:\n got %v\nwant a URLError: %s", c.url, err, c.msg)
		}
	}
}

// TestParseOutputOptions: the options given for every output (the config
// file's) apply to each kind's, and its URL's query wins over them.
func TestParseOutputOptions(t *testing.T) {
	o := sinks.DefaultOptions()
	o.Syslog.Format = "cef"
	o.Syslog.CA = "/nonexistent-ca.pem"
	o.Kafka.SASL, o.Kafka.User, o.Kafka.Password = "NOPE", "sensor", "from-file"
	for _, c := range []struct {
		url, err string // err: "" for none
	}{
		{"syslog+tls://c:6514", "syslog+tls://c:6514: ca: open /nonexistent-ca.pem: no such file or directory"},
		{"syslog+udp://c:514", "syslog+udp://c:514: ca, cert, key and server_name need syslog+tls"},
		{"syslog+udp://c:514?ca=&format=bogus", `syslog+udp://c:514?ca=&format=bogus: sinks/syslog: unknown format "bogus" (want 5424, 3164 or cef)`},
		{"syslog+udp://c:514?ca=", ""},
		{"kafka://b:9092/t", `kafka://b:9092/t: sinks/kafka: sasl mechanism "NOPE": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"kafka://b:9092/t?sasl=PLAIN", ""},
	} {
		_, err := sinks.ParseOutput(c.url, o, nil)
		if got := errString(err); got != c.err {
			t.Errorf("%s: %q, want %q", c.url, got, c.err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
