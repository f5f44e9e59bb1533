package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for echowatch itself, so the
// live tests can run it inside a network namespace with `ip netns exec`.
func TestMain(m *testing.M) {
	if os.Getenv("ECHOWATCH_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if addr := os.Getenv("ECHOWATCH_AS_SENDER"); addr != "" {
		os.Exit(sendUDP(addr, os.Args[1:]))
	}
	if addr := os.Getenv("ECHOWATCH_AS_CHARGEN"); addr != "" {
		os.Exit(serveChargen(addr))
	}
	os.Exit(m.Run())
}

// runMain runs echowatch in-process and returns its exit status and output.
func runMain(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func pcap(name string) string { return filepath.Join("..", "..", "pcaps", name) }

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}} {
		code, out, _ := runMain(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "Usage: echowatch -r FILE") || !strings.Contains(out, "--home-net") {
			t.Errorf("%v: exit %d, output %q", args, code, out)
		}
	}
	if code, out, _ := runMain(t, nil, "--version"); code != 0 || out != "echowatch dev\n" {
		t.Errorf("--version: exit %d, output %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad-key.yaml")
	os.WriteFile(badKey, []byte("home_net: [192.0.2.0/24]\nmax_flow: 10\n"), 0o644)
	badCIDR := filepath.Join(dir, "bad-cidr.yaml")
	os.WriteFile(badCIDR, []byte("home_net: [192.0.2.0/33]\n"), 0o644)
	badSize := filepath.Join(dir, "bad-size.yaml")
	os.WriteFile(badSize, []byte("evidence:\n  max_bytes: lots\n"), 0o644)
	huge := filepath.Join(dir, "huge.yaml")
	os.WriteFile(huge, bytes.Repeat([]byte("# a comment line of sixteen\n"), 17<<20/28+1), 0o644)
	badPort := filepath.Join(dir, "bad-port.yaml")
	os.WriteFile(badPort, []byte("vxlan_ports: [8472, 65536]\n"), 0o644)
	demo := pcap("demo.pcap")
	cases := []struct {
		args []string
		msg  string // a regexp the one error line must match
	}{
		{nil, `^echowatch: nothing to read: give -r FILE, -i IFACE, --sflow ADDR or --netflow ADDR$`},
		{[]string{"-r", demo, "-i", "eth0"}, `-r and -i cannot be used together`},
		{[]string{"-r", demo, "--format", "xml"}, `--format: unknown format "xml"`},
		{[]string{"-r", demo, "--home-net", "10.0.0.0/99"}, `10\.0\.0\.0/99`},
		{[]string{"-r", demo, "--bogus"}, `^echowatch: unrecognized option '--bogus'$`},
		{[]string{"-r", demo, "-bogus=1"}, `^echowatch: unrecognized option '-bogus'$`},
		{[]string{"-r", demo, "--workers"}, `^echowatch: option '--workers' requires an argument$`},
		{[]string{"-r", demo, "--workers=x"}, `^echowatch: invalid value "x" for option --workers: parse error$`},
		{[]string{"-r", demo, "-stats=maybe"}, `^echowatch: invalid boolean value "maybe" for option -stats: parse error$`},
		{[]string{"-r", demo, "--workers", "0"}, `--workers: 0 is out of range`},
		{[]string{"-r", demo, "--capture", "dpdk"}, `--capture: unknown method "dpdk"`},
		{[]string{"-r", demo, "--max-flows", "-1"}, `--max-flows`},
		{[]string{"-r", demo, "--bpf", "udp prot 7"}, `--bpf: .*"udp prot 7"`},
		{[]string{"-r", demo, "--config", filepath.Join(dir, "missing.yaml")}, `config .*missing\.yaml: no such file or directory`},
		{[]string{"-r", demo, "--config", badKey}, `config .*bad-key\.yaml: .*max_flow`},
		{[]string{"-r", demo, "--config", badCIDR}, `192\.0\.2\.0/33`},
		{[]string{"-r", demo, "stray"}, `unexpected argument "stray"`},
		{[]string{"-r", demo, "--evidence-dir", dir, "--evidence-packets", "0"}, `--evidence-packets: 0 is out of range`},
		{[]string{"-r", demo, "--config", badSize}, `config .*bad-size\.yaml: .*"lots" is not a size`},
		// Numbers past any sensible value are mistakes, refused before
		// they exhaust memory or overflow a time.
		{[]string{"-r", demo, "--queue-size", "1000000000000"}, `^echowatch: --queue-size: 1000000000000 is out of range \(1 to 1000000\)$`},
		{[]string{"-r", demo, "--max-flows", "1000000000000"}, `--max-flows: 1000000000000 is out of range`},
		{[]string{"-r", demo, "--max-memory", "100TiB"}, `^echowatch: --max-memory: 100TiB is too large \(at most 16TiB\)$`},
		{[]string{"-r", demo, "--flush-timeout", "2000h"}, `--flush-timeout: 2000h0m0s is out of range`},
		{[]string{"-r", demo, "--stats-interval", "1ns"}, `--stats-interval: 1ns is out of range`},
		{[]string{"-r", demo, "--max-alerts-per-second", "9999999999"}, `max_alerts_per_second: must be between 0 and 1000000`},
		{[]string{"-r", demo, "--end-after", "100000h"}, `end_after: must be between 1s and 720h`},
		{[]string{"-r", demo, "--metrics-listen", "127.0.0.1:99999"}, `--metrics-listen: "127\.0\.0\.1:99999"`},
		{[]string{"-r", demo, "--output", "syslog+udp://h:99999"}, `^echowatch: --output syslog\+udp://h:99999: port "99999": want a number from 1 to 65535$`},
		{[]string{"-r", demo, "--output", "kafka://b1:9092,b2:70000/t"}, `broker b2:70000: port "70000"`},
		{[]string{"-r", demo, "--config", huge}, `^echowatch: config .*huge\.yaml: larger than 16 MiB: refused$`},
		// How frames are decoded.
		{[]string{"-r", demo, "--vxlan-port", "0"}, `^echowatch: invalid value "0" for option --vxlan-port: "0" is not a port \(want a number from 1 to 65535\)$`},
		{[]string{"-r", demo, "--vxlan-port", "8472,70000"}, `invalid value "8472,70000" for option --vxlan-port: "70000" is not a port`},
		{[]string{"-r", demo, "--vxlan-port", "6081"}, `^echowatch: --vxlan-port: VXLAN port 6081: GENEVE's port$`},
		{[]string{"-r", demo, "--vxlan-port", "1,2,3,4,5,6,7,8,9"}, `^echowatch: --vxlan-port: more than 8 VXLAN ports$`},
		{[]string{"-r", demo, "--config", badPort}, `^echowatch: --vxlan-port: 65536 is not a port \(want a number from 1 to 65535\)$`},
		{[]string{"-r", demo, "--tenant", "vpc"}, `^echowatch: --tenant: "vpc": want one of none, vni, gre-key, erspan-session, vlan, mpls-label, teid$`},
		{[]string{"-r", demo, "--dedup", "-1ms"}, `^echowatch: --dedup: -1ms is out of range \(0: off, or above 0 and at most 1s\)$`},
		{[]string{"-r", demo, "--dedup", "2s"}, `--dedup: 2s is out of range`},
		{[]string{"-r", demo, "--dedup", "1"}, `invalid value "1" for option --dedup`},
	}
	for _, c := range cases {
		code, out, errOut := runMain(t, nil, c.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || !regexp.MustCompile(c.msg).MatchString(lines[0]) ||
			lines[1] != "Try 'echowatch --help' for more information." {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 and /%s/", c.args, code, errOut, c.msg)
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "alerts.txt")
	os.WriteFile(text, []byte("this is not a capture\n"), 0o644)
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"-r", filepath.Join(dir, "none.pcap")}, `^echowatch: capture: open .*none\.pcap: no such file or directory$`},
		{[]string{"-r", text}, `^echowatch: capture: .*alerts\.txt: not a pcap or pcapng file$`},
		{[]string{"-r", pcap("demo.pcap"), "-r", text}, `alerts\.txt: not a pcap or pcapng file`},
		{[]string{"-i", "echowatch-no-such-if0"}, `^echowatch: capture/live: echowatch-no-such-if0: no such device`},
		{[]string{"-i", "echowatch-no-such-if0", "--capture", "afpacket"}, `echowatch-no-such-if0: no such device`},
	}
	for _, c := range cases {
		code, out, errOut := runMain(t, nil, c.args...)
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !regexp.MustCompile(c.msg).MatchString(strings.TrimSpace(errOut)) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and /%s/", c.args, code, out, errOut, c.msg)
		}
	}
}

// TestOfflineRun checks an offline run end to end: same alerts on every
// run, the same from standard input, from a file split in two, and stats.
func TestOfflineRun(t *testing.T) {
	demo := pcap("demo.pcap")
	code, first, errOut := runMain(t, nil, "-r", demo, "--format", "eve")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if n := strings.Count(first, `"event_type":"alert"`); n < 3 {
		t.Fatalf("demo gave %d alerts:\n%s", n, first)
	}
	for _, kind := range []string{`"kind":"reflection"`, `"kind":"loop"`, `"kind":"scan"`} {
		if !strings.Contains(first, kind) {
			t.Errorf("demo alerts lack %s", kind)
		}
	}
	if _, again, _ := runMain(t, nil, "-r", demo, "--format", "eve"); again != first {
		t.Errorf("a second run differs")
	}
	data, err := os.ReadFile(demo)
	if err != nil {
		t.Fatal(err)
	}
	if _, fromStdin, _ := runMain(t, data, "-r", "-", "--format", "eve"); fromStdin != first {
		t.Errorf("reading standard input differs from reading the file")
	}
	// The capture cut in two at a record boundary and read as one timeline.
	a, b := splitPcap(t, data)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.pcap"), a, 0o644)
	os.WriteFile(filepath.Join(dir, "b.pcap"), b, 0o644)
	if _, split, _ := runMain(t, nil, "-r", filepath.Join(dir, "a.pcap"), "-r", filepath.Join(dir, "b.pcap"), "--format", "eve"); split != first {
		t.Errorf("two files read as one timeline differ from the whole file")
	}
	// Text format: one line per alert, same count.
	_, text, _ := runMain(t, nil, "-r", demo, "--format", "text")
	if strings.Count(text, "\n") != strings.Count(first, "\n") || strings.Contains(text, "{") {
		t.Errorf("text output:\n%s", text)
	}
	// --stats adds one stats event that counts every frame.
	_, withStats, _ := runMain(t, nil, "-r", demo, "--format", "eve", "--stats")
	lines := strings.Split(strings.TrimSpace(withStats), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(withStats, first) || !strings.Contains(last, `"event_type":"stats"`) ||
		!regexp.MustCompile(`"frames":\d+,"decoded":\d+`).MatchString(last) {
		t.Errorf("stats event: %s", last)
	}
}

// splitPcap cuts a classic little-endian pcap into two files at the record
// boundary nearest its middle.
func splitPcap(t *testing.T, data []byte) (a, b []byte) {
	t.Helper()
	hdr := data[:24]
	off := 24
	for off < len(data)/2 {
		n := int(uint32(data[off+8]) | uint32(data[off+9])<<8 | uint32(data[off+10])<<16 | uint32(data[off+11])<<24)
		off += 16 + n
	}
	return data[:off], append(append([]byte{}, hdr...), data[off:]...)
}

func TestTruncatedCaptureKeepsAlerts(t *testing.T) {
	data, err := os.ReadFile(pcap("demo.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	_, whole, _ := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve")
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	os.WriteFile(cut, data[:len(data)-7], 0o644)
	code, out, errOut := runMain(t, nil, "-r", cut, "--format", "eve")
	if code != 0 || !regexp.MustCompile(`^echowatch: warning: capture: .*cut\.pcap.*truncated.*\n$`).MatchString(errOut) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	// Cutting the last record can only change what comes at the very end:
	// every alert before the final incident ends is kept.
	if got := strings.Count(out, `"phase":"start"`); got != strings.Count(whole, `"phase":"start"`) || got == 0 {
		t.Errorf("truncated run has %d starts, whole run %d", got, strings.Count(whole, `"phase":"start"`))
	}
}

// TestLargeConfigFileReadWhole: a file of long allow lists (here, a
// megabyte and a half of comments) is read to its end, not cut where a
// bound happened to be.
func TestLargeConfigFileReadWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "long.yaml")
	long := bytes.Repeat([]byte("# an allow list would be long too\n"), 1536<<10/34)
	os.WriteFile(path, append(long, "format: text\nhome_net: [198.51.100.0/24]\n"...), 0o644)
	code, out, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--config", path)
	if code != 0 || strings.Contains(out, "{") || !strings.Contains(out, "inbound") {
		t.Errorf("the settings after the first MiB were not applied: exit %d, stderr %q:\n%s", code, errOut, out)
	}
}

func TestConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "echowatch.yaml")
	os.WriteFile(cfgPath, []byte("format: text\nhome_net: [198.51.100.0/24]\nmax_alerts_per_second: 100\n"), 0o644)
	_, out, _ := runMain(t, nil, "-r", pcap("demo.pcap"), "--config", cfgPath)
	if strings.Contains(out, "{") || !strings.Contains(out, "inbound") {
		t.Errorf("config file not applied (want text format, inbound direction):\n%s", out)
	}
	_, out, _ = runMain(t, nil, "-r", pcap("demo.pcap"), "--config", cfgPath, "--format", "eve", "--home-net", "203.0.113.0/24")
	if !strings.HasPrefix(out, "{") || strings.Contains(out, `"direction":"inbound"`) {
		t.Errorf("flags did not win over the config file:\n%s", out)
	}
}

func TestBPFOnFiles(t *testing.T) {
	_, all, _ := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve")
	_, onlyLoop, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve", "--bpf", "udp port 19")
	if errOut != "" || !strings.Contains(all, `"kind":"reflection"`) {
		t.Fatalf("stderr %q", errOut)
	}
	if strings.Contains(onlyLoop, `"kind":"reflection"`) || !strings.Contains(onlyLoop, `"kind":"loop"`) {
		t.Errorf("--bpf 'udp port 19' should keep the echo-chargen loop and drop the echo reflection:\n%s", onlyLoop)
	}
}

// TestExampleConfig keeps the documented example configuration true: it
// loads, and it says exactly what the defaults are.
func TestExampleConfig(t *testing.T) {
	got := defaultConfig()
	if err := loadConfigFile(filepath.Join("..", "..", "echowatch.example.yaml"), &got); err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("echowatch.example.yaml differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
}

// normalize treats nil and empty lists alike.
func normalize(c config) config {
	v := reflect.ValueOf(&c).Elem()
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Slice:
			if v.Len() == 0 && v.CanSet() {
				v.Set(reflect.Zero(v.Type()))
			}
		}
	}
	walk(v)
	return c
}

func TestIsTerminal(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Errorf("%s taken for a terminal", os.DevNull)
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Errorf("a buffer taken for a terminal")
	}
}

// TestOfflineQueueWaits: reading files, a full output queue waits for its
// destination rather than lose alerts, so even a queue of one event gives
// every alert, in order.
func TestOfflineQueueWaits(t *testing.T) {
	for _, name := range []string{"demo.pcap", "reflection-out/capture.pcap", "bogon-flood/capture.pcap"} {
		code, want, errOut := runMain(t, nil, "-r", pcap(name), "--format", "eve")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut)
		}
		code, got, errOut := runMain(t, nil, "-r", pcap(name), "--format", "eve", "--queue-size", "1")
		if code != 0 || got != want {
			t.Errorf("%s with --queue-size 1: exit %d, %d bytes of alerts for %d; stderr %s", name, code, len(got), len(want), errOut)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "100MB": 100e6, "2 TiB": 2 << 40, "7B": 7,
	} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1MiB", "9999999TiB", "1.5GiB", "GiB"} {
		if got, err := parseByteSize(in); err == nil {
			t.Errorf("%q: %d, want an error", in, got)
		}
	}
}

// TestHeldBackAlertsSummarised: what max_alerts_per_second held back is
// said at exit, by kind, and counted in the stats event; every incident
// announced still ends.
func TestHeldBackAlertsSummarised(t *testing.T) {
	code, out, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve", "--stats", "--max-alerts-per-second", "1")
	if code != 0 || errOut != "echowatch: warning: max_alerts_per_second held back 1 alert (exposed 1); the stats event counts them by kind\n" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, `"exposed":{"incidents":1,"start":0,"update":0,"end":0,"suppressed":1}`) {
		t.Errorf("the stats event does not count the exposure held back:\n%s", out)
	}
	if s, e := strings.Count(out, `"phase":"start"`), strings.Count(out, `"phase":"end"`); s != 3 || e != 3 {
		t.Errorf("%d starts and %d ends, want 3 and 3 (the exposure held back has neither)", s, e)
	}
}

// TestREADMEUsage keeps the README's copy of --help true.
func TestREADMEUsage(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```\n"+usageText+"```\n") {
		t.Error("README.md's usage block differs from --help")
	}
}

// TestConfigUnknownKeys: a misspelt key, at the top or inside a section,
// is named with its line, in the config's terms: no Go type names.
func TestConfigUnknownKeys(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"thresholds: {}\nrefelction: {}\n", "line 2: field refelction not found"},
		{"output_options:\n  syslog:\n    facilty: local3\n", "line 3: field facilty not found"},
		{"output_options:\n  kafka:\n    brokr: x\n", "line 3: field brokr not found"},
	} {
		path := filepath.Join(t.TempDir(), "echowatch.yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runMain(t, nil, "--config", path, "-r", pcap("demo.pcap"))
		if code != 2 || !strings.Contains(errOut, c.want) || strings.Contains(errOut, " type ") {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", c.yaml, code, errOut, c.want)
		}
	}
}
