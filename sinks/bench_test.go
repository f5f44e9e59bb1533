package sinks_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// BenchmarkSinks measures each output's throughput on loopback, in
// alerts per second from Write to delivered, rendering included. The
// writer waits when the queue is full, so nothing is dropped.
func BenchmarkSinks(b *testing.B) {
	b.Run("discard", func(b *testing.B) {
		// The queue and the rendering alone: the ceiling for every output.
		benchSink(b, &sinks.Writer{W: io.Discard})
	})
	b.Run("file", func(b *testing.B) {
		benchSink(b, &sinks.File{Path: filepath.Join(b.TempDir(), "alerts.json")})
	})
	for _, network := range []string{"udp", "tcp", "tls", "unix"} {
		b.Run("syslog+"+network, func(b *testing.B) {
			r := sinkstest.StartRsyslog(b, network)
			benchSink(b, newSyslog(b, r, sinks.RFC5424))
		})
	}
	b.Run("kafka", func(b *testing.B) {
		// The broker acknowledges and keeps nothing: in-process kfake's
		// storage would otherwise take most of the two cores.
		k := sinkstest.StartKafka(b, "alerts", 6, sinkstest.Blackhole())
		benchSink(b, newKafka(b, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic}))
	})
	b.Run("kafka+stored", func(b *testing.B) {
		k := sinkstest.StartKafka(b, "alerts", 6)
		benchSink(b, newKafka(b, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic}))
	})
}

func benchSink(b *testing.B, d sinks.Dialer) {
	q := sinks.NewQueue("bench", d, sinks.QueueConfig{Size: 20000, FlushTimeout: time.Minute})
	if err := q.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	alerts := make([]*detect.Alert, 64)
	for i := range alerts {
		alerts[i] = sinkstest.Alert(i, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for {
			err := q.Write(alerts[i%len(alerts)])
			if !errors.Is(err, sinks.ErrQueueFull) {
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	if err := q.Close(); err != nil && q.Stats().Undelivered > 0 {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "alerts/s")
	if s := q.Stats(); s.Delivered != uint64(b.N) {
		b.Logf("delivered %d of %d", s.Delivered, b.N)
	}
}
