package sinks_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// TestConformance runs the suite every output passes, each against a real
// destination on this machine.
func TestConformance(t *testing.T) {
	t.Run("Writer", func(t *testing.T) {
		sinkstest.Run(t, func(t *testing.T) sinkstest.Target {
			// Standard output redirected to a file, as a service manager does.
			f, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return sinkstest.Target{Dialer: &sinks.Writer{W: f}, Received: linesOf(t, f.Name())}
		})
	})
	t.Run("File", func(t *testing.T) {
		sinkstest.Run(t, func(t *testing.T) sinkstest.Target {
			path := filepath.Join(t.TempDir(), "alerts.json")
			return sinkstest.Target{Dialer: &sinks.File{Path: path}, Received: linesOf(t, path)}
		})
	})
	for _, network := range []string{"udp", "tcp", "tls", "unix"} {
		t.Run("Syslog/"+network, func(t *testing.T) {
			sinkstest.Run(t, func(t *testing.T) sinkstest.Target {
				r := sinkstest.StartRsyslog(t, network)
				return sinkstest.Target{
					Dialer:   newSyslog(t, r, sinks.RFC5424),
					Received: syslogEVE(r),
					Stop:     r.Stop, Start: r.Start,
					Lossy: network == "udp" || network == "unix",
					Blind: network == "udp",
				}
			})
		})
	}
	t.Run("Kafka", func(t *testing.T) {
		sinkstest.Run(t, func(t *testing.T) sinkstest.Target {
			k := sinkstest.StartKafka(t, "alerts", 4)
			return sinkstest.Target{
				Dialer:   newKafka(t, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic}),
				Received: kafkaEVE(k),
				Stop:     k.Stop, Start: k.Start,
			}
		})
	})
}

func newSyslog(t testing.TB, r *sinkstest.Rsyslog, format sinks.SyslogFormat) *sinks.Syslog {
	t.Helper()
	// The tests stop rsyslog while messages stream in; what it had
	// acknowledged but not yet read is lost with it. A settle time well
	// above how long a loaded machine may keep rsyslog from reading keeps
	// such messages unsettled, so they are sent again.
	cfg := sinks.SyslogConfig{Network: r.Network, Addr: r.Addr, Format: format, Hostname: "sensor-1", Version: "1.2.3",
		SettleTime: 2 * time.Second}
	if r.Certs != nil {
		cfg.TLS = r.Certs.ClientTLS()
	}
	s, err := sinks.NewSyslog(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newKafka(t testing.TB, cfg sinks.KafkaConfig) *sinks.Kafka {
	t.Helper()
	k, err := sinks.NewKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// linesOf returns a reader of a file's lines.
func linesOf(t *testing.T, path string) func() []string {
	return func() []string {
		lines, _ := sinkstest.FileLines(path)
		return lines
	}
}

// syslogEVE returns a reader of the EVE JSON rsyslog received as MSG.
func syslogEVE(r *sinkstest.Rsyslog) func() []string {
	return func() []string {
		var eve []string
		for _, m := range r.Messages() {
			eve = append(eve, strings.TrimPrefix(m.Msg, " "))
		}
		return eve
	}
}

// kafkaEVE returns a reader of the record values in the topic.
func kafkaEVE(k *sinkstest.Kafka) func() []string {
	return func() []string {
		var eve []string
		for _, r := range k.All() {
			eve = append(eve, string(r.Value))
		}
		return eve
	}
}

// checkSmallQueueThroughput delivers 10,000 events through a queue of the
// default size, then through a queue of 10, reading files (the writer
// waits for room): a destination that keeps up takes them from the small
// queue in a time of the same order, not one that grows as the queue
// shrinks. The bound is generous, for a loaded machine.
func checkSmallQueueThroughput(t *testing.T, dial func() sinks.Dialer) {
	t.Helper()
	const n = 10000
	deliver := func(size int, limit time.Duration) time.Duration {
		t.Helper()
		q := sinks.NewQueue(t.Name(), dial(), sinks.QueueConfig{Size: size, Wait: 5 * time.Second, FlushTimeout: 20 * time.Second})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			for i := range n {
				if err := q.Write(sinkstest.Alert(i%5, i/5)); err != nil {
					done <- err
					return
				}
			}
			done <- q.Close()
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("queue of %d: %v", size, err)
			}
		case <-time.After(limit):
			t.Fatalf("queue of %d: %+v after %v", size, q.Stats(), limit)
		}
		if s := q.Stats(); s.Delivered != n {
			t.Fatalf("queue of %d: %+v", size, s)
		}
		return time.Since(start)
	}
	def := deliver(0, time.Minute)
	// Before rounds were sent at once and settled as acknowledged, a
	// queue of 10 took 30 (Kafka) to 2,000 (syslog) times as long.
	small := deliver(10, 10*def+3*time.Second)
	t.Logf("%d events: %v with the default queue, %v with a queue of 10", n, def, small)
}
