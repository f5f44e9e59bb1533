package sinks_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// TestKafkaKeysAndOrder reads back with a Kafka consumer what the sink
// produced: each message keyed by its incident, one incident on one
// partition in order, the EVE JSON as the value.
func TestKafkaKeysAndOrder(t *testing.T) {
	k := sinkstest.StartKafka(t, "alerts", 6)
	q := startQueue(t, newKafka(t, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic, SensorName: "sensor-1"}))
	const keys, per = 10, 100
	want := map[string]string{} // EVE → key
	for i := range per {
		for key := range keys {
			a := sinkstest.Alert(key, i)
			want[string(a.AppendEVE(nil))] = a.Key()
			if err := q.Write(a); err != nil {
				t.Fatal(err)
			}
		}
	}
	q.Write(stats{})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	recs := k.Records(keys*per+1, 10*time.Second)
	if len(recs) != keys*per+1 {
		t.Fatalf("read %d records, want %d", len(recs), keys*per+1)
	}
	partitionOf := map[string]int32{}
	var eve []string
	for _, r := range recs {
		key, value := string(r.Key), string(r.Value)
		if strings.Contains(value, `"event_type":"stats"`) {
			if key != "stats/sensor-1" {
				t.Errorf("stats event keyed %q", key)
			}
			continue
		}
		if want[value] != key {
			t.Fatalf("record keyed %q, want %q: %s", key, want[value], value)
		}
		if p, ok := partitionOf[key]; ok && p != r.Partition {
			t.Fatalf("incident %s on partitions %d and %d", key, p, r.Partition)
		}
		partitionOf[key] = r.Partition
		eve = append(eve, value)
	}
	checkAllInOrder(t, eve, keys, per)
	parts := map[int32]bool{}
	for _, p := range partitionOf {
		parts[p] = true
	}
	if len(parts) < 2 {
		t.Errorf("%d incidents all on one partition", keys)
	}
}

// TestKafkaBrokerRestart takes the broker away and brings it back while
// alerts stream in: none is lost, each incident's in order.
func TestKafkaBrokerRestart(t *testing.T) {
	k := sinkstest.StartKafka(t, "alerts", 3)
	q := startQueue(t, newKafka(t, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic}))
	const n = 3000
	done := streamAlerts(t, q, n)
	time.Sleep(400 * time.Millisecond)
	k.Stop()
	time.Sleep(700 * time.Millisecond)
	k.Start()
	<-done
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	s := q.Stats()
	if s.Delivered != n || s.Lost() != 0 {
		t.Fatalf("stats %+v", s)
	}
	if s.Failed == 0 {
		t.Errorf("no send failed while the broker was away: %+v", s)
	}
	var eve []string
	for _, r := range k.All() {
		eve = append(eve, string(r.Value))
	}
	checkAllInOrder(t, eve, 5, n/5)
}

func TestKafkaMissingTopic(t *testing.T) {
	k := sinkstest.StartKafka(t, "", 0)
	d := newKafka(t, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: "alerts"})
	q := sinks.NewQueue("kafka", d, sinks.QueueConfig{})
	defer q.Close()
	err := q.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), `topic "alerts" does not exist`) || !strings.Contains(err.Error(), "auto_create=true") {
		t.Fatalf("Start: %v, want a clear error about the missing topic", err)
	}
}

// TestKafkaAutoCreate has the output create a missing topic with the
// partitions it asks for, on a broker that creates none by itself (as
// production clusters are set up) and on one that would.
func TestKafkaAutoCreate(t *testing.T) {
	for _, brokerCreates := range []bool{false, true} {
		t.Run(fmt.Sprintf("broker creates %v", brokerCreates), func(t *testing.T) {
			var opts []sinkstest.KafkaOption
			if brokerCreates {
				opts = append(opts, sinkstest.WithAutoCreate())
			}
			k := sinkstest.StartKafka(t, "", 0, opts...)
			k.Topic = "created"
			q := startQueue(t, newKafka(t, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic, AutoCreate: true, Partitions: 3}))
			for i := range 10 {
				q.Write(sinkstest.Alert(1, i))
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if recs := k.Records(10, 10*time.Second); len(recs) != 10 {
				t.Fatalf("read %d records from the created topic", len(recs))
			}
			if n := k.Partitions(); n != 3 {
				t.Errorf("the created topic has %d partitions, want the 3 asked for", n)
			}
		})
	}
}

// TestKafkaSecurity produces over TLS, with each SASL mechanism, and with
// each compression codec.
func TestKafkaSecurity(t *testing.T) {
	certs := sinkstest.NewCerts(t)
	cases := []struct {
		name     string
		broker   []sinkstest.KafkaOption
		consumer []kgo.Opt
		cfg      sinks.KafkaConfig
	}{
		{name: "tls", broker: []sinkstest.KafkaOption{sinkstest.WithTLS(certs)},
			cfg: sinks.KafkaConfig{TLS: certs.ClientTLS()}},
		{name: "plain", broker: []sinkstest.KafkaOption{sinkstest.WithSASL("PLAIN", "sensor", "s3cret")},
			consumer: []kgo.Opt{kgo.SASL(plain.Auth{User: "sensor", Pass: "s3cret"}.AsMechanism())},
			cfg:      sinks.KafkaConfig{SASL: sinks.SASLConfig{Mechanism: "PLAIN", Username: "sensor", Password: "s3cret"}}},
		{name: "scram-sha-256+tls", broker: []sinkstest.KafkaOption{sinkstest.WithTLS(certs), sinkstest.WithSASL("SCRAM-SHA-256", "sensor", "s3cret")},
			consumer: []kgo.Opt{kgo.SASL(scram.Auth{User: "sensor", Pass: "s3cret"}.AsSha256Mechanism())},
			cfg:      sinks.KafkaConfig{TLS: certs.ClientTLS(), SASL: sinks.SASLConfig{Mechanism: "SCRAM-SHA-256", Username: "sensor", Password: "s3cret"}}},
		{name: "scram-sha-512", broker: []sinkstest.KafkaOption{sinkstest.WithSASL("SCRAM-SHA-512", "sensor", "s3cret")},
			consumer: []kgo.Opt{kgo.SASL(scram.Auth{User: "sensor", Pass: "s3cret"}.AsSha512Mechanism())},
			cfg:      sinks.KafkaConfig{SASL: sinks.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "sensor", Password: "s3cret"}}},
		{name: "gzip", cfg: sinks.KafkaConfig{Compression: "gzip"}},
		{name: "snappy", cfg: sinks.KafkaConfig{Compression: "snappy"}},
		{name: "lz4", cfg: sinks.KafkaConfig{Compression: "lz4", Acks: "leader"}},
		{name: "zstd", cfg: sinks.KafkaConfig{Compression: "zstd", Acks: "none"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := sinkstest.StartKafka(t, "alerts", 2, c.broker...)
			k.ConsumerOpts(c.consumer...)
			cfg := c.cfg
			cfg.Brokers, cfg.Topic = []string{k.Addr}, k.Topic
			q := startQueue(t, newKafka(t, cfg))
			for i := range 20 {
				q.Write(sinkstest.Alert(i%2, i/2))
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if recs := k.Records(20, 10*time.Second); len(recs) != 20 {
				t.Fatalf("read %d records of 20", len(recs))
			}
		})
	}
}

// TestKafkaWrongPassword: a broker that refuses the credentials hangs up
// (or answers SASL_AUTHENTICATION_FAILED). That is no broker down but a
// wrong setting: start-up fails, and so does every later connection,
// saying so with the mechanism and user, never the password.
func TestKafkaWrongPassword(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			k := sinkstest.StartKafka(t, "alerts", 1, sinkstest.WithSASL(mech, "sensor", "s3cret"))
			d := newKafka(t, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic,
				SASL: sinks.SASLConfig{Mechanism: mech, Username: "sensor", Password: "Wr0ngPassw0rd"}})
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error with a wrong password", what)
				}
				msg := err.Error()
				if !strings.Contains(msg, "authentication failed") || !strings.Contains(msg, mech) ||
					!strings.Contains(msg, `"sensor"`) || strings.Contains(msg, "Wr0ngPassw0rd") {
					t.Errorf("%s: %q: want it to say authentication failed, with the mechanism and user, without the password", what, msg)
				}
			}
			q := sinks.NewQueue("kafka", d, sinks.QueueConfig{FlushTimeout: 300 * time.Millisecond})
			defer q.Close()
			err := q.Start(context.Background())
			check("start", err)
			if errors.Is(err, sinks.ErrUnavailable) {
				t.Errorf("start: %v: a refused password is no broker out of reach", err)
			}
			// What a running output logs as down is what Dial returns.
			_, err = d.Dial(context.Background())
			check("dial", err)
		})
	}
}

func TestKafkaConfigErrors(t *testing.T) {
	for _, cfg := range []sinks.KafkaConfig{
		{Topic: "alerts"},
		{Brokers: []string{"nohost"}, Topic: "alerts"},
		{Brokers: []string{"b:9092"}},
		{Brokers: []string{"b:9092"}, Topic: "alerts", Acks: "two"},
		{Brokers: []string{"b:9092"}, Topic: "alerts", Compression: "brotli"},
		{Brokers: []string{"b:9092"}, Topic: "alerts", SASL: sinks.SASLConfig{Mechanism: "GSSAPI"}},
	} {
		if _, err := sinks.NewKafka(cfg); err == nil || !strings.HasPrefix(err.Error(), "sinks/kafka: ") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

// TestKafkaSmallQueueThroughput: a round of a small queue is sent at once,
// not after a batch timeout that would cap the rate at the queue's size
// per timeout (2,000 events/s for a queue of 10 and 5ms).
func TestKafkaSmallQueueThroughput(t *testing.T) {
	k := sinkstest.StartKafka(t, "alerts", 2)
	checkSmallQueueThroughput(t, func() sinks.Dialer {
		return newKafka(t, sinks.KafkaConfig{Brokers: []string{k.Addr}, Topic: k.Topic})
	})
}
