package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/detect"
)

// TestLiveReload changes a live sensor's --config file and sends SIGHUP: a
// bad value and a table size are refused, with the setting named, a good
// change is taken, and the sensor runs on and stops cleanly. One worker
// polls for the new config between frames, several take it in the stage.
func TestLiveReload(t *testing.T) {
	for _, tc := range captureModes {
		t.Run(tc.name, func(t *testing.T) { testLiveReload(t, tc.name, tc.args) })
	}
}

func testLiveReload(t *testing.T, name string, mode []string) {
	_, sensor := netnsPair(t, "rl"+name[:2])
	conf := filepath.Join(t.TempDir(), "echowatch.yaml")
	write := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("home_net: [198.18.0.0/30]\nreflection:\n  pps: 50\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// --sensor-name on the command line wins over the file at every reload.
	s := startSensor(ctx, t, sensor, append([]string{"-i", "ew1", "--format", "eve", "--config", conf,
		"--sensor-name", "e2e"}, mode...)...)
	hangup := func(yaml, want string) {
		t.Helper()
		if news := s.reload(t, conf, yaml); !strings.Contains(news, want) {
			t.Fatalf("after SIGHUP: %s, want %s", news, want)
		}
	}
	hangup("home_net: [198.18.0.0/30]\nreflection:\n  pps: -1\n",
		"configuration refused: detect: reflection.pps: must be positive")
	hangup("home_net: [198.18.0.0/30]\nreflection:\n  window: 10s\n",
		"configuration refused: detect: reflection.window: cannot change while running")
	// Tables are sized once: a new size, or a new budget, waits for a
	// restart, and the rest of the file applies.
	if news := s.reload(t, conf, "home_net: [198.18.0.0/30]\nmax_memory: 512MiB\nreflection:\n  max_victims: 5\n  pps: 60\n"); !strings.Contains(news, "not reloaded: restart to change max_memory, reflection.max_victims") ||
		!strings.Contains(news, "configuration reloaded") {
		t.Fatalf("after SIGHUP with new sizes: %s", news)
	}
	hangup("home_net: [198.18.0.0/30]\nreflection:\n  pps: 500\n  allow: [198.18.0.1]\n",
		"configuration reloaded")
	if err := s.stop(); err != nil {
		t.Fatalf("echowatch: %v\nstderr:\n%s", err, s.errors())
	}
	t.Logf("stderr:\n%s", s.errors())
}

// TestRereadFlagsWin checks that a reload reads the file afresh (a key
// taken out goes back to its default) and that the command line's flags
// still win over it.
func TestRereadFlagsWin(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "echowatch.yaml")
	if err := os.WriteFile(conf, []byte("sensor_name: file\nend_after: 5m\nreflection:\n  pps: 70\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseArgs([]string{"-r", "x.pcap", "--config", conf, "--end-after", "2m"}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SensorName != "file" || cfg.EndAfter != 2*time.Minute || cfg.Reflection.PPS != 70 {
		t.Fatalf("start: sensor %q end_after %v pps %v", cfg.SensorName, cfg.EndAfter, cfg.Reflection.PPS)
	}
	if err := os.WriteFile(conf, []byte("sensor_name: again\nend_after: 9m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := cfg.reread()
	if err != nil {
		t.Fatal(err)
	}
	if n.SensorName != "again" || n.EndAfter != 2*time.Minute || n.Reflection.PPS != detect.DefaultConfig().Reflection.PPS ||
		len(n.Read) != 1 {
		t.Errorf("reread: sensor %q end_after %v pps %v read %q", n.SensorName, n.EndAfter, n.Reflection.PPS, n.Read)
	}
	if err := os.WriteFile(conf, []byte("reflection:\n  ppss: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.reread(); err == nil || !strings.Contains(err.Error(), "ppss") {
		t.Errorf("misspelt key: %v", err)
	}
	if cfg, _, _ := parseArgs([]string{"-r", "x.pcap"}, io.Discard, false); cfg.reread != nil {
		t.Error("reread without --config")
	}
}

// TestFlagsOverFile: a flag given replaces the file's setting (a list
// with the flag's values, not added to it), a setting no flag gives keeps
// the file's value, and a repeated flag adds to its own list.
func TestFlagsOverFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "echowatch.yaml")
	yaml := "read: [file.pcap]\noutputs: [stdout, \"file:///tmp/a.json\"]\nhome_net: [10.0.0.0/8]\n" +
		"stats: true\npromiscuous: true\nsensor_name: fromfile\nworkers: 3\nvxlan_ports: [9999]\ntenant: vni\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseArgs([]string{"--config", conf, "-r", "a.pcap", "-r", "b.pcap", "--output", "stdout",
		"--home-net", "192.0.2.0/24, 198.51.100.0/24", "--home-net", "203.0.113.0/24", "--stats=false", "--no-promisc",
		"--vxlan-port", "8472, 4800", "--vxlan-port", "4801", "--tenant", "gre-key"},
		io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.VXLANPorts, []int{8472, 4800, 4801}) || cfg.Tenant != "gre-key" {
		t.Errorf("flags over the file: vxlan_ports %v tenant %q", cfg.VXLANPorts, cfg.Tenant)
	}
	if !slices.Equal(cfg.Read, []string{"a.pcap", "b.pcap"}) || !slices.Equal(cfg.Outputs, []string{"stdout"}) ||
		!slices.Equal(cfg.HomeNet, []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"}) ||
		cfg.Stats || cfg.Promiscuous {
		t.Errorf("flags over the file: read %q outputs %q home_net %q stats %v promiscuous %v",
			cfg.Read, cfg.Outputs, cfg.HomeNet, cfg.Stats, cfg.Promiscuous)
	}
	if cfg.SensorName != "fromfile" || cfg.Workers != 3 {
		t.Errorf("the file's other settings: sensor %q workers %d", cfg.SensorName, cfg.Workers)
	}
	// Without flags the file's lists stand; the defaults where it says nothing.
	cfg, _, err = parseArgs([]string{"--config", conf}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Read, []string{"file.pcap"}) || len(cfg.Outputs) != 2 || !cfg.Stats || cfg.Snaplen != defaultConfig().Snaplen ||
		!slices.Equal(cfg.VXLANPorts, []int{9999}) || cfg.Tenant != "vni" {
		t.Errorf("the file alone: read %q outputs %q stats %v snaplen %d vxlan_ports %v tenant %q", cfg.Read, cfg.Outputs,
			cfg.Stats, cfg.Snaplen, cfg.VXLANPorts, cfg.Tenant)
	}
}

// TestRestartOnly checks that a reload names the settings it leaves as they
// started, and nothing when only reloadable ones change.
func TestRestartOnly(t *testing.T) {
	started := defaultConfig()
	n := defaultConfig()
	n.Reflection.PPS, n.Outputs = 7, []string{"file:///tmp/x"}
	if got := restartOnly(started, n); len(got) != 0 {
		t.Errorf("reloadable changes named %q", got)
	}
	n.BPF, n.Evidence.Dir, n.Read = "udp", "/tmp/evidence", []string{"other.pcap"}
	if got := strings.Join(restartOnly(started, n), ","); got != "read,bpf,evidence" {
		t.Errorf("named %q, want read,bpf,evidence", got)
	}
	// The decoders and the dedup tables are made at the start.
	n = defaultConfig()
	n.VXLANPorts, n.Tenant, n.Dedup = []int{8472}, "vni", time.Millisecond
	if got := strings.Join(restartOnly(started, n), ","); got != "vxlan_ports,tenant,dedup" {
		t.Errorf("named %q, want vxlan_ports,tenant,dedup", got)
	}
}

// TestOutputWaitFollowsTheRun: outputs wait for a slow destination as long
// as it makes progress only in a run over files, as the run started: a
// reload that reads a file saying read: instead of interface: does not
// make a live sensor's new outputs wait more than a live one does.
func TestOutputWaitFollowsTheRun(t *testing.T) {
	cfg := defaultConfig()
	cfg.Read, cfg.Format = []string{"x.pcap"}, "eve"
	for _, live := range []bool{false, true} {
		o, err := outputOptionsFor(cfg, live)
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool][2]time.Duration{false: {cfg.OutputOptions.FlushTimeout, 0}, true: {liveWait, liveWaitBudget}}[live]
		if o.Wait != want[0] || o.WaitBudget != want[1] {
			t.Errorf("live %v: outputs wait %v within %v a second, want %v within %v", live, o.Wait, o.WaitBudget, want[0], want[1])
		}
	}
}
