package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/report"
)

// TestMaxMemoryErrors: a budget too small to be useful, and sizes that do
// not fit in the budget, are usage errors that name the minimum, the
// settings and what they need.
func TestMaxMemoryErrors(t *testing.T) {
	dir := t.TempDir()
	badSize := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badSize, []byte("max_memory: 12 parsecs\n"), 0o644)
	tooBig := filepath.Join(dir, "big.yaml")
	os.WriteFile(tooBig, []byte("max_flows: 1000000\nexposed:\n  max_findings: 500000\n"), 0o644)
	demo := pcap("demo.pcap")
	for _, c := range []struct {
		args []string
		msg  string // a regexp the one error line must match
	}{
		{[]string{"-r", demo, "--max-memory", "32MiB"}, `^echowatch: --max-memory: 32MiB is too small \(at least 85MiB\)$`},
		{[]string{"-r", demo, "--max-memory", "100MiB", "--workers", "2"}, `--max-memory: 100MiB is too small for 2 workers \(at least 165MiB\)$`},
		{[]string{"-r", demo, "--max-memory", "lots"}, `invalid value "lots" for option --max-memory: "lots" is not a size`},
		{[]string{"-r", demo, "--config", badSize}, `config .*bad\.yaml: line 1: "12 parsecs" is not a size`},
		{[]string{"-r", demo, "--max-flows", "5000000"},
			`^echowatch: max_flows 5000000 need 534\.1MiB, more than max_memory 256MiB leaves for tables \(170MiB\): raise max_memory to 689MiB or lower them$`},
		{[]string{"-r", demo, "--config", tooBig},
			`^echowatch: max_flows 1000000, exposed\.max_findings 500000 need 442\.5MiB, more than max_memory 256MiB leaves`},
	} {
		code, out, errOut := runMain(t, nil, c.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || !regexp.MustCompile(c.msg).MatchString(lines[0]) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 and /%s/", c.args, code, errOut, c.msg)
		}
	}
	// The same sizes fit a larger budget (though not detection's default).
	if code, _, errOut := runMain(t, nil, "-r", demo, "--config", tooBig, "--max-memory", "1GiB"); code != 0 {
		t.Errorf("1GiB: exit %d, stderr %q", code, errOut)
	}
}

// TestMaxMemorySizesTables checks the bound's accounting as the sensor
// does it: for several budgets and workers, every table sized from
// --max-memory, at its documented cost per entry, fits in what the budget
// leaves for tables; sizes given are kept; and the running engine's
// tables have the sizes the budget gave.
func TestMaxMemorySizesTables(t *testing.T) {
	demo := pcap("demo.pcap")
	for _, c := range []struct {
		args  []string
		flows int // what --max-flows gives; 0: from the budget
	}{
		{[]string{"--max-memory", "85MiB"}, 0},
		{nil, 0},
		{[]string{"--max-memory", "1GiB"}, 0},
		{[]string{"--max-memory", "4GiB", "--workers", "4"}, 0},
		{[]string{"--max-memory", "512MiB", "--max-flows", "100000"}, 100000},
	} {
		cfg, _, err := parseArgs(append([]string{"-r", demo}, c.args...), io.Discard, false)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		tables := append(cfg.Config.Tables(&cfg.MaxFlows), report.LogTable(&cfg.logIncidents))
		var sum int64
		for _, tb := range tables {
			if *tb.Size < 64 {
				t.Errorf("%v: %s is %d", c.args, tb.Setting, *tb.Size)
			}
			sum += int64(*tb.Size) * tb.Bytes
		}
		b := cfg.budget()
		if avail := b.TableBytes(); sum > avail {
			t.Errorf("%v: tables take %d bytes, more than the %d that %s leaves", c.args, sum, avail, detect.FormatBytes(b.Bytes))
		}
		if c.flows != 0 && cfg.MaxFlows != c.flows {
			t.Errorf("%v: max_flows %d", c.args, cfg.MaxFlows)
		}
		t.Logf("%v: flows %d, victims %d, pairs %d, targets %d, scanners %d, findings %d, incidents %d", c.args, cfg.MaxFlows,
			cfg.Reflection.MaxVictims, cfg.Loop.MaxPairs, cfg.SpoofedFlood.MaxTargets, cfg.Scan.MaxScanners,
			cfg.Exposed.MaxFindings, cfg.logIncidents)
	}

	// A larger budget makes larger tables, and the engine has them.
	small, _, _ := parseArgs([]string{"-r", demo}, io.Discard, false)
	big, _, _ := parseArgs([]string{"-r", demo, "--max-memory", "1GiB"}, io.Discard, false)
	if big.MaxFlows <= small.MaxFlows || big.Exposed.MaxFindings <= small.Exposed.MaxFindings {
		t.Errorf("1GiB: flows %d, findings %d; 256MiB: %d, %d", big.MaxFlows, big.Exposed.MaxFindings, small.MaxFlows, small.Exposed.MaxFindings)
	}
	_, out, _ := runMain(t, nil, "-r", demo, "--format", "eve", "--stats", "--max-memory", "1GiB")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var ev struct {
		Stats struct {
			Echowatch struct {
				Detect struct {
					Tables []struct {
						Name string
						Cap  int
					}
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"reflection.victims": big.Reflection.MaxVictims, "loop.pairs": big.Loop.MaxPairs,
		"spoofed_flood.targets": big.SpoofedFlood.MaxTargets, "scan.scanners": big.Scan.MaxScanners,
		"exposed.findings": big.Exposed.MaxFindings}
	for _, tb := range ev.Stats.Echowatch.Detect.Tables {
		if n, ok := want[tb.Name]; ok && tb.Cap != n {
			t.Errorf("%s: cap %d, want %d", tb.Name, tb.Cap, n)
		}
		delete(want, tb.Name)
	}
	if len(want) > 0 {
		t.Errorf("stats lack %v", want)
	}
}

// TestREADMEMemoryTable keeps the README's table of the tables true: each
// row's bytes per entry and share are what max_memory sizes the table by,
// and its size at the default budget is what the sensor gives it.
func TestREADMEMemoryTable(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseArgs([]string{"-r", pcap("demo.pcap")}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	tables := append(cfg.Config.Tables(&cfg.MaxFlows), report.LogTable(&cfg.logIncidents))
	number := regexp.MustCompile(`[0-9][0-9,]*`)
	rows := 0
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 7 || !strings.HasSuffix(strings.TrimSpace(cells[4]), "%") {
			continue
		}
		rows++
		setting := strings.Trim(strings.TrimSpace(cells[2]), "`")
		if setting == "" {
			setting = "the incident log"
		}
		num := func(cell string) int64 {
			n, _ := strconv.ParseInt(strings.ReplaceAll(number.FindString(cell), ",", ""), 10, 64)
			return n
		}
		found := false
		for _, tb := range tables {
			if tb.Setting != setting {
				continue
			}
			found = true
			if num(cells[3]) != tb.Bytes || num(cells[4]) != int64(tb.Share) || num(cells[5]) != int64(*tb.Size) {
				t.Errorf("README: %s", line)
				t.Errorf("want %d bytes per entry, %d%%, %d at %s", tb.Bytes, tb.Share, *tb.Size, detect.FormatBytes(detect.DefaultMaxMemory))
			}
		}
		if !found {
			t.Errorf("README lists %q, which is no table", setting)
		}
	}
	if rows != len(tables) {
		t.Errorf("README's table has %d rows, want %d", rows, len(tables))
	}
}
