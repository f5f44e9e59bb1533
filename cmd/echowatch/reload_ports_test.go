package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLiveReloadPorts starts a live sensor that watches only port 19, sends
// echo (port 7) replies toward a victim, then adds port 7 to the
// configuration file and sends SIGHUP: the same traffic is a reflection
// from then on, and only then. With several workers, they judge which
// packets detection wants on their own goroutines; the flow table and the
// engine learn the new port on theirs.
func TestLiveReloadPorts(t *testing.T) {
	for _, tc := range captureModes {
		t.Run(tc.name, func(t *testing.T) {
			sender, sensor := netnsPair(t, "rp"+tc.name[:2])
			conf := filepath.Join(t.TempDir(), "echowatch.yaml")
			write := func(yaml string) {
				t.Helper()
				if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			const home = "home_net: [198.18.0.0/30]\n"
			only19 := home
			for _, kind := range []string{"reflection", "loop", "spoofed_flood", "scan", "exposed"} {
				only19 += kind + ":\n  ports: [19]\n"
			}
			write(only19)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s := startSensor(ctx, t, sensor, append([]string{"-i", "ew1", "--format", "eve", "--config", conf,
				"--stats", "--stats-interval", "200ms"}, tc.args...)...)
			sent := 0
			send := func() {
				t.Helper()
				sendReplies(ctx, t, sender)
				sent += 400
				s.settle(t, sent)
			}
			send()
			// Every kind's default ports, 7 among them.
			if news := s.reload(t, conf, home); !strings.Contains(news, "configuration reloaded") {
				t.Fatalf("the new ports were not taken; stderr:\n%s", s.errors())
			}
			reloaded := time.Now()
			send()
			if err := s.stop(); err != nil {
				t.Fatalf("echowatch: %v\nstderr:\n%s", err, s.errors())
			}
			starts := 0
			for _, line := range strings.Split(strings.TrimSpace(s.stdout.String()), "\n") {
				if line == "" {
					continue // no alert at all
				}
				var ev struct {
					EventType string `json:"event_type"`
					Timestamp string `json:"timestamp"`
					SrcPort   int    `json:"src_port"`
					Incident  struct{ Kind, Phase string }
				}
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("%v: %q", err, line)
				}
				if ev.EventType != "alert" {
					continue
				}
				at, err := time.Parse("2006-01-02T15:04:05.000000-0700", ev.Timestamp)
				if err != nil {
					t.Fatal(err)
				}
				if at.Before(reloaded) {
					t.Errorf("alert before port 7 was watched: %s", line)
				}
				if ev.Incident.Kind == "reflection" && ev.Incident.Phase == "start" && ev.SrcPort == 7 {
					starts++
				}
			}
			if starts != 1 {
				t.Errorf("%d reflection starts from port 7 after the reload, want 1:\n%s", starts, s.stdout.String())
			}
		})
	}
}
