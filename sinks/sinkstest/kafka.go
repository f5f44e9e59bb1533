package sinkstest

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka is a Kafka-protocol broker (franz-go's kfake) that a test starts
// on loopback. It keeps its data in a directory, so Stop and Start take it
// away and bring it back on the same port with what it had.
type Kafka struct {
	Addr  string // 127.0.0.1:port
	Topic string // "" when started without one

	t       testing.TB
	opts    []kfake.Opt
	cluster *kfake.Cluster
	tls     *tls.Config // the clients', when the broker speaks TLS
	sasl    []kgo.Opt
}

// KafkaOption configures StartKafka.
type KafkaOption func(*Kafka)

// WithTLS makes the broker speak TLS with certs' server certificate.
func WithTLS(certs *Certs) KafkaOption {
	return func(k *Kafka) {
		k.opts = append(k.opts, kfake.TLS(certs.ServerTLS()))
		k.tls = certs.ClientTLS()
	}
}

// WithSASL makes the broker ask for SASL, with one superuser.
func WithSASL(mechanism, user, pass string) KafkaOption {
	return func(k *Kafka) {
		k.opts = append(k.opts, kfake.EnableSASL(), kfake.Superuser(mechanism, user, pass))
	}
}

// Blackhole makes the broker acknowledge what is produced and keep
// nothing, so that a benchmark measures the producer, not the broker's
// storage. There is nothing to read back.
func Blackhole() KafkaOption {
	return func(k *Kafka) { k.opts = append(k.opts, kfake.BlackholeProduce()) }
}

// WithAutoCreate lets the broker create topics that producers ask for.
func WithAutoCreate() KafkaOption {
	return func(k *Kafka) { k.opts = append(k.opts, kfake.AllowAutoTopicCreation()) }
}

// StartKafka starts a one-broker cluster with topic (none when empty) of
// partitions partitions.
func StartKafka(t testing.TB, topic string, partitions int32, opts ...KafkaOption) *Kafka {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "kfake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	k := &Kafka{Addr: "127.0.0.1:" + strconv.Itoa(port), Topic: topic, t: t}
	k.opts = []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir)}
	for _, o := range opts {
		o(k)
	}
	first := k.opts
	if topic != "" {
		first = append(first[:len(first):len(first)], kfake.SeedTopics(partitions, topic))
	}
	k.start(first)
	t.Cleanup(k.Stop)
	return k
}

func (k *Kafka) start(opts []kfake.Opt) {
	k.t.Helper()
	var err error
	// The port may linger a moment after Stop.
	for range 50 {
		if k.cluster, err = kfake.NewCluster(opts...); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	k.t.Fatalf("sinkstest: start kfake on %s: %v", k.Addr, err)
}

// Stop takes the broker away: its port refuses connections.
func (k *Kafka) Stop() {
	if k.cluster != nil {
		k.cluster.Close()
		k.cluster = nil
	}
}

// Start brings the broker back, on the same port, with its data.
func (k *Kafka) Start() {
	if k.cluster == nil {
		k.start(k.opts)
	}
}

// All reads every record the topic holds now.
func (k *Kafka) All() []*kgo.Record {
	k.t.Helper()
	var n int64
	err := k.admin(func(ctx context.Context, adm *kadm.Client) error {
		ends, err := adm.ListEndOffsets(ctx, k.Topic)
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return err
	})
	if err != nil {
		k.t.Logf("sinkstest: list end offsets: %v", err)
		return nil
	}
	return k.Records(int(n), 10*time.Second)
}

// Partitions returns how many partitions the topic has (0 when it does
// not exist).
func (k *Kafka) Partitions() int {
	k.t.Helper()
	var n int
	err := k.admin(func(ctx context.Context, adm *kadm.Client) error {
		ts, err := adm.ListTopics(ctx, k.Topic)
		n = len(ts[k.Topic].Partitions)
		return err
	})
	if err != nil {
		k.t.Fatalf("sinkstest: list topics: %v", err)
	}
	return n
}

// admin runs f with an admin client of the cluster, for 10 seconds at
// most.
func (k *Kafka) admin(f func(context.Context, *kadm.Client) error) error {
	cl := k.client()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f(ctx, kadm.NewClient(cl))
}

// Records reads the topic from the start until it has n records or
// timeout passes, and returns what it read.
func (k *Kafka) Records(n int, timeout time.Duration) []*kgo.Record {
	k.t.Helper()
	cl := k.client()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

func (k *Kafka) client() *kgo.Client {
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.Addr),
		kgo.ConsumeTopics(k.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
	if k.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(k.tls))
	}
	opts = append(opts, k.sasl...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		k.t.Fatal(err)
	}
	return cl
}

// ConsumerOpts adds options to the consumer Records uses (SASL).
func (k *Kafka) ConsumerOpts(opts ...kgo.Opt) { k.sasl = append(k.sasl, opts...) }
