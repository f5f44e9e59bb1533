package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// TestBundledEVEMatchesSuricataSchema runs echowatch on every bundled
// capture (each case of pcaps/, with its configuration, and the demo) with
// --stats, and checks every event it writes against Suricata's published
// schema of EVE, less our own objects: an alert's "incident", and
// "echowatch" in a stats event. What a consumer of Suricata's eve.json
// validates takes them whole; the Suricata members that Elastic, EveBox
// and Arkime correlate on are there: an alert's flow_id, alert.source and
// alert.target, and the stats event's uptime and decoder.pkts.
func TestBundledEVEMatchesSuricataSchema(t *testing.T) {
	schema := sinkstest.LoadEVESchema(t)
	cases, _ := filepath.Glob(pcap("*/"))
	runs := [][]string{{"-r", pcap("demo.pcap")}}
	for _, dir := range cases {
		files, _ := filepath.Glob(filepath.Join(dir, "capture*.pcap"))
		if len(files) == 0 {
			continue
		}
		var args []string
		for _, f := range files {
			args = append(args, "-r", f)
		}
		if _, err := os.Stat(filepath.Join(dir, "config.yaml")); err == nil {
			args = append(args, "--config", filepath.Join(dir, "config.yaml"))
		}
		runs = append(runs, args)
	}
	if len(runs) < 10 {
		t.Fatalf("found %d bundled captures", len(runs))
	}
	var alerts, stats int
	for _, args := range runs {
		code, out, errOut := runMain(t, nil, append(args, "--format", "eve", "--stats")...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
			continue
		}
		for line := range strings.Lines(out) {
			var ev struct {
				EventType string `json:"event_type"`
				FlowID    uint64 `json:"flow_id"`
				Alert     struct {
					Source, Target *struct{ IP string }
				}
				Stats struct{ Decoder struct{ Pkts uint64 } }
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%v: not JSON (%v): %s", args, err, line)
			}
			switch ev.EventType {
			case "alert":
				alerts++
				if err := schema.Validate([]byte(line), "incident"); err != nil {
					t.Errorf("%v: alert:\n%v\n%s", args, err, line)
				}
				if ev.FlowID == 0 || ev.Alert.Source == nil || ev.Alert.Target == nil {
					t.Errorf("%v: an alert without flow_id, alert.source or alert.target: %s", args, line)
				}
			case "stats":
				stats++
				if err := schema.Validate([]byte(line), "stats.echowatch"); err != nil {
					t.Errorf("%v: stats:\n%v\n%s", args, err, line)
				}
				if ev.Stats.Decoder.Pkts == 0 {
					t.Errorf("%v: stats without decoder.pkts: %s", args, line)
				}
			default:
				t.Errorf("%v: an event of type %q", args, ev.EventType)
			}
		}
	}
	if alerts < 50 || stats != len(runs) {
		t.Errorf("%d alerts and %d stats events from %d runs", alerts, stats, len(runs))
	}
	t.Logf("%d alerts and %d stats events of %d captures match Suricata's schema", alerts, stats, len(runs))
}

// TestStatsSchemaRejectsOurs: without taking our own object out, a stats
// event fails Suricata's schema, so that the test above can fail.
func TestStatsSchemaRejectsOurs(t *testing.T) {
	schema := sinkstest.LoadEVESchema(t)
	_, out, _ := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve", "--stats")
	out = strings.TrimSpace(out)
	last := out[strings.LastIndex(out, "\n")+1:]
	if err := schema.Validate([]byte(last)); err == nil || !strings.Contains(err.Error(), "echowatch") {
		t.Errorf("our stats object taken for Suricata's: %v", err)
	}
	if err := schema.Validate([]byte(strings.Replace(last, `"decoder":{"pkts":`, `"decoder":{"frames":`, 1)), "stats.echowatch"); err == nil {
		t.Error("a counter Suricata does not have passes in its decoder object")
	}
}
