package sinks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// KafkaConfig is where and how a Kafka output produces.
type KafkaConfig struct {
	Brokers []string // host:port of one or more brokers
	Topic   string
	// Acks is how many replicas must have a message before it counts as
	// delivered: "all" (the in-sync replicas; default), "leader" or "none".
	Acks string
	// Compression is "none" (default), "gzip", "snappy", "lz4" or "zstd".
	Compression string
	TLS         *tls.Config // nil speaks plaintext
	SASL        SASLConfig
	// AutoCreate creates a missing topic (CreateTopics, with Partitions
	// partitions and ReplicationFactor replicas; 0 for either is the
	// broker's default); without it a missing topic is an error at
	// start-up.
	AutoCreate        bool
	Partitions        int
	ReplicationFactor int
	// BatchTimeout is how long a round waits for more messages before it
	// is sent. Default none: a round is sent at once, whatever the queue's
	// size, since nothing more joins it (see kafkaConn); the rounds grow
	// by themselves under load, with what comes while one is out. A
	// timeout trades latency and rate for fewer, larger produce requests.
	BatchTimeout time.Duration
	// WriteTimeout bounds one produce request; default 10s.
	WriteTimeout time.Duration
	// ClientID names the producer to the brokers; default "echowatch".
	ClientID string
	// SensorName keys events that are not alerts (stats), so each
	// sensor's stay in order on one partition.
	SensorName string
}

// SASLConfig authenticates to the brokers.
type SASLConfig struct {
	Mechanism string // "" (none), "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"
	Username  string
	Password  string
}

// Kafka is the destination for an output to a Kafka topic. Each message's
// key is the incident key (Alert.Key: victim, target, scanner or endpoint
// pair), so one incident's alerts go to one partition, in order, and its
// value is the EVE JSON. Partitions are chosen like the Java client's
// default partitioner (murmur2), so other producers and stream processors
// agree on where a key lives.
type Kafka struct {
	cfg         KafkaConfig
	addr        net.Addr
	transport   *kafka.Transport
	sasl        sasl.Mechanism // nil without SASL
	acks        kafka.RequiredAcks
	compression kafka.Compression
}

var (
	_ Dialer  = (*Kafka)(nil)
	_ Checker = (*Kafka)(nil)
)

// A round of messages handed to the writer at once is bounded so that each
// partition's share fits one batch of the writer, and one produce request
// (the broker's message.max.bytes is 1 MiB by default): a failure then
// fails all of a partition's share or none of it.
const (
	kafkaBatchBytes = 1 << 20
	kafkaBatchSize  = 1000
)

// NewKafka checks cfg and returns the destination; it does no I/O.
func NewKafka(cfg KafkaConfig) (*Kafka, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("sinks/kafka: no broker")
	}
	for _, b := range cfg.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return nil, fmt.Errorf("sinks/kafka: broker %q: want host:port", b)
		}
	}
	if cfg.Topic == "" || strings.ContainsAny(cfg.Topic, "/ ") {
		return nil, fmt.Errorf("sinks/kafka: bad topic %q", cfg.Topic)
	}
	k := &Kafka{cfg: cfg, addr: kafka.TCP(cfg.Brokers...)}
	switch strings.ToLower(cfg.Acks) {
	case "", "all", "-1":
		k.acks = kafka.RequireAll
	case "leader", "1":
		k.acks = kafka.RequireOne
	case "none", "0":
		k.acks = kafka.RequireNone
	default:
		return nil, fmt.Errorf("sinks/kafka: acks %q: want all, leader or none", cfg.Acks)
	}
	switch strings.ToLower(cfg.Compression) {
	case "", "none":
	case "gzip":
		k.compression = kafka.Gzip
	case "snappy":
		k.compression = kafka.Snappy
	case "lz4":
		k.compression = kafka.Lz4
	case "zstd":
		k.compression = kafka.Zstd
	default:
		return nil, fmt.Errorf("sinks/kafka: compression %q: want none, gzip, snappy, lz4 or zstd", cfg.Compression)
	}
	var mech sasl.Mechanism
	switch strings.ToUpper(cfg.SASL.Mechanism) {
	case "":
	case "PLAIN":
		mech = plain.Mechanism{Username: cfg.SASL.Username, Password: cfg.SASL.Password}
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if strings.HasSuffix(cfg.SASL.Mechanism, "512") {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, cfg.SASL.Username, cfg.SASL.Password)
		if err != nil {
			return nil, fmt.Errorf("sinks/kafka: sasl: %w", err)
		}
		mech = m
	default:
		return nil, fmt.Errorf("sinks/kafka: sasl mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", cfg.SASL.Mechanism)
	}
	if cfg.BatchTimeout <= 0 {
		// kafka-go takes 0 for its own default, a second. A round is
		// handed to the writer in one call that holds the partition's
		// lock, so the timer, however short, fires on the whole round.
		k.cfg.BatchTimeout = time.Microsecond
	}
	if cfg.WriteTimeout <= 0 {
		k.cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.ClientID == "" {
		k.cfg.ClientID = "echowatch"
	}
	k.transport = &kafka.Transport{
		DialTimeout: 10 * time.Second,
		ClientID:    k.cfg.ClientID,
		TLS:         cfg.TLS,
		MetadataTTL: 5 * time.Second,
	}
	k.sasl, k.transport.SASL = mech, mech
	return k, nil
}

// saslWatch is a SASL mechanism that remembers whether its exchange
// completed. A broker that refuses the credentials may just hang up, as
// kfake and Kafka before 1.0 do, and the client then sees only
// "unexpected EOF", the same as a broker going away: an exchange that
// began and never completed tells the two apart. One watch serves one
// connection (see probeAuth), so that others cannot mislead it.
type saslWatch struct {
	sasl.Mechanism
	began, done atomic.Bool
}

// saslExchange is the watched connection's authentication.
type saslExchange struct {
	sasl.StateMachine
	w *saslWatch
}

func (w *saslWatch) Start(ctx context.Context) (sasl.StateMachine, []byte, error) {
	sm, ir, err := w.Mechanism.Start(ctx)
	if err != nil {
		return nil, nil, err
	}
	w.began.Store(true)
	return &saslExchange{StateMachine: sm, w: w}, ir, nil
}

func (x *saslExchange) Next(ctx context.Context, challenge []byte) (bool, []byte, error) {
	done, resp, err := x.StateMachine.Next(ctx, challenge)
	if done && err == nil {
		x.w.done.Store(true)
	}
	return done, resp, err
}

// probeAuth authenticates to the brokers on a connection of its own, and
// reports whether a broker refused the credentials: its answer says so,
// or it hung up in the midst of the exchange.
func (k *Kafka) probeAuth(ctx context.Context) bool {
	for _, b := range k.cfg.Brokers {
		w := &saslWatch{Mechanism: k.sasl}
		d := &kafka.Dialer{Timeout: 5 * time.Second, ClientID: k.cfg.ClientID, TLS: k.cfg.TLS, SASLMechanism: w}
		c, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			c.Close()
			return false
		}
		if errors.Is(err, kafka.SASLAuthenticationFailed) || w.began.Load() && !w.done.Load() {
			return true
		}
	}
	return false
}

// authError says that the brokers refused the credentials when err is
// what they do then: an error wrapping kafka.SASLAuthenticationFailed, or
// a connection closed that a connection of probeAuth's own shows was
// closed in the midst of authentication. It names the mechanism and user,
// never the password. It returns nil for any other error.
func (k *Kafka) authError(ctx context.Context, err error) error {
	if k.sasl == nil || err == nil {
		return nil
	}
	hungUp := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
	if !errors.Is(err, kafka.SASLAuthenticationFailed) && !(hungUp && k.probeAuth(ctx)) {
		return nil
	}
	return fmt.Errorf("sinks/kafka: SASL %s %w for user %q on %s (wrong user or password?): %w",
		strings.ToUpper(k.cfg.SASL.Mechanism), errAuth, k.cfg.SASL.Username, k.addr, err)
}

// errAuth marks a refusal of the credentials: a wrong setting, not a
// broker out of reach.
var errAuth = errors.New("authentication failed")

// Check asks the brokers whether the topic exists.
func (k *Kafka) Check(ctx context.Context) error {
	err := k.checkTopic(ctx)
	if err != nil && unreachable(err) && !errors.Is(err, errAuth) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// checkTopic tells whether the topic exists; with AutoCreate it creates
// a missing one.
func (k *Kafka) checkTopic(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := k.topic(ctx, false)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		if k.cfg.AutoCreate {
			return k.createTopic(ctx)
		}
		return fmt.Errorf("sinks/kafka: topic %q does not exist on %s (create it, or add auto_create=true to create it)", k.cfg.Topic, k.addr)
	}
	return err
}

// createTopic creates the topic with the partitions and replicas the
// configuration gives, rather than count on the brokers' own
// auto.create.topics.enable, which production clusters turn off. A topic
// that another sensor created meanwhile is no error.
func (k *Kafka) createTopic(ctx context.Context) error {
	orDefault := func(n int) int {
		if n <= 0 {
			return -1 // the broker's num.partitions, default.replication.factor
		}
		return n
	}
	c := &kafka.Client{Addr: k.addr, Transport: k.transport}
	r, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: k.cfg.Topic, NumPartitions: orDefault(k.cfg.Partitions), ReplicationFactor: orDefault(k.cfg.ReplicationFactor),
	}}})
	if err == nil {
		err = r.Errors[k.cfg.Topic]
	}
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		if aerr := k.authError(ctx, err); aerr != nil {
			return aerr
		}
		return fmt.Errorf("sinks/kafka: creating topic %q on %s: %w", k.cfg.Topic, k.addr, err)
	}
	return nil
}

// topic reads the topic's partition count from the metadata the transport
// caches; create lets the broker create a missing topic. A topic the
// broker does not know is an error wrapping kafka.UnknownTopicOrPartition.
func (k *Kafka) topic(ctx context.Context, create bool) (partitions int, err error) {
	r, err := k.transport.RoundTrip(ctx, k.addr, &metadataAPI.Request{
		TopicNames: []string{k.cfg.Topic}, AllowAutoTopicCreation: create,
	})
	if err != nil {
		if aerr := k.authError(ctx, err); aerr != nil {
			return 0, aerr
		}
		return 0, fmt.Errorf("sinks/kafka: metadata from %s: %w", k.addr, err)
	}
	for _, t := range r.(*metadataAPI.Response).Topics {
		if t.Name == k.cfg.Topic {
			if t.ErrorCode != 0 {
				return 0, fmt.Errorf("sinks/kafka: topic %q: %w", k.cfg.Topic, kafka.Error(t.ErrorCode))
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("sinks/kafka: topic %q: %w", k.cfg.Topic, kafka.UnknownTopicOrPartition)
}

// unreachable tells a broker that could not be reached from one that
// answered no.
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// Dial checks that the brokers answer for the topic and starts a writer.
func (k *Kafka) Dial(ctx context.Context) (Conn, error) {
	if err := k.checkTopic(ctx); err != nil {
		k.transport.CloseIdleConnections()
		return nil, err
	}
	c := &kafkaConn{k: k}
	c.w = &kafka.Writer{
		Addr:     k.addr,
		Topic:    k.cfg.Topic,
		Balancer: kafkaBalancer{c},
		// A few quick attempts ride out a leader moving; a broker that is
		// gone fails the send, and the Queue retries with backoff.
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 500 * time.Millisecond,
		// Batches close on BatchTimeout: a round is at most one batch.
		BatchSize:              kafkaBatchSize,
		BatchBytes:             kafkaBatchBytes,
		BatchTimeout:           k.cfg.BatchTimeout,
		ReadTimeout:            k.cfg.WriteTimeout,
		WriteTimeout:           k.cfg.WriteTimeout,
		RequiredAcks:           k.acks,
		Async:                  true,
		Completion:             c.complete,
		Compression:            k.compression,
		Transport:              k.transport,
		AllowAutoTopicCreation: k.cfg.AutoCreate,
	}
	return c, nil
}

// kafkaConn hands records to a kafka-go writer and waits for the writer's
// completion callbacks before it takes more. One round at a time keeps
// each key's messages in order even when a produce fails and is sent
// again; under load the rounds grow, up to the Queue's MaxBatch.
type kafkaConn struct {
	k      *Kafka
	w      *kafka.Writer
	msgs   []kafka.Message
	keys   [][]byte // key of each record of the round
	part   []int    // partition of each record of the round (murmur2)
	all    []int    // 0 to the topic's partitions - 1
	unsent []*Record

	mu     sync.Mutex
	errs   []error // result of msgs[i]
	left   int     // messages not completed
	done   chan struct{}
	closed bool // a round was abandoned: completions may still come
}

var _ Conn = (*kafkaConn)(nil)

// kafkaBalancer hands the writer the partition Send chose for each message
// while it sized the round; round reads it back too, because a failed
// produce does not always say which partition failed. Send and the writer
// read the same cached metadata, but should the writer's be newer and the
// topic have fewer partitions (deleted and made again), the message is
// hashed over the writer's partitions and the choice remembered.
type kafkaBalancer struct{ c *kafkaConn }

func (b kafkaBalancer) Balance(msg kafka.Message, partitions ...int) int {
	i := msg.WriterData.(int)
	if p := b.c.part[i]; slices.Contains(partitions, p) {
		return p
	}
	p := kafka.Murmur2Balancer{Consistent: true}.Balance(msg, partitions...)
	b.c.part[i] = p
	return p
}

func (c *kafkaConn) complete(msgs []kafka.Message, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		return
	}
	for i := range msgs {
		c.errs[msgs[i].WriterData.(int)] = err
	}
	if c.left -= len(msgs); c.left == 0 {
		close(c.done)
		c.done = nil
	}
}

// key is the message key: the incident key for an alert, the event type
// and sensor for another event.
func (c *kafkaConn) key(r *Record) []byte {
	if a := r.Alert(); a != nil {
		return []byte(a.Key())
	}
	if c.k.cfg.SensorName == "" {
		return []byte(r.Type)
	}
	return []byte(r.Type + "/" + c.k.cfg.SensorName)
}

func (c *kafkaConn) Send(ctx context.Context, recs []*Record) (Progress, error) {
	var p Progress
	n, err := c.k.topic(ctx, c.k.cfg.AutoCreate)
	if err == nil && n == 0 { // nothing to hash keys over
		err = fmt.Errorf("sinks/kafka: topic %q: %w", c.k.cfg.Topic, kafka.UnknownTopicOrPartition)
	}
	if err != nil {
		c.unsent = append(c.unsent, recs...)
		return p, err
	}
	if len(c.all) != n {
		c.all = make([]int, n)
		for i := range c.all {
			c.all[i] = i
		}
	}
	bytes := make([]int, n)
	count := make([]int, n)
	for len(recs) > 0 {
		// A round: the records up to the first that would overflow its
		// partition's batch.
		clear(bytes)
		clear(count)
		c.keys = c.keys[:0]
		c.part = c.part[:0]
		m := 0
		for m < len(recs) {
			r := recs[m]
			key := c.key(r)
			size := len(r.EVE) + len(key) + 128 // record overhead
			if size > kafkaBatchBytes {
				if m == 0 {
					p.Rejected++ // a message the broker would refuse
					recs = recs[1:]
					continue
				}
				break
			}
			part := kafka.Murmur2Balancer{Consistent: true}.Balance(kafka.Message{Key: key}, c.all...)
			if bytes[part]+size > kafkaBatchBytes || count[part] == kafkaBatchSize {
				break
			}
			bytes[part] += size
			count[part]++
			c.keys = append(c.keys, key)
			c.part = append(c.part, part)
			m++
		}
		if m == 0 {
			break
		}
		q, err := c.round(ctx, recs[:m])
		p.Delivered += q.Delivered
		if err != nil {
			c.unsent = append(c.unsent, recs[m:]...)
			return p, err
		}
		recs = recs[m:]
	}
	return p, nil
}

// round produces recs and waits for every completion. What failed, and
// what followed it on the same partition, is kept to send again, in
// order.
func (c *kafkaConn) round(ctx context.Context, recs []*Record) (Progress, error) {
	c.msgs = c.msgs[:0]
	for i, r := range recs {
		c.msgs = append(c.msgs, kafka.Message{Key: c.keys[i], Value: r.EVE, WriterData: i})
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.errs = append(c.errs[:0], make([]error, len(recs))...)
	c.left, c.done = len(recs), done
	c.mu.Unlock()
	if err := c.w.WriteMessages(ctx, c.msgs...); err != nil {
		c.mu.Lock()
		c.done = nil
		c.mu.Unlock()
		c.unsent = append(c.unsent, recs...)
		return Progress{}, fmt.Errorf("sinks/kafka: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		c.mu.Lock()
		c.done, c.closed = nil, true
		c.mu.Unlock()
		c.unsent = append(c.unsent, recs...)
		return Progress{}, ctx.Err()
	}
	var (
		p        Progress
		firstErr error
		failed   = map[int]bool{} // partitions with a failure so far
	)
	for i, r := range recs {
		err := c.errs[i]
		if err != nil || failed[c.part[i]] {
			if err != nil && firstErr == nil {
				firstErr = err
			}
			failed[c.part[i]] = true
			c.unsent = append(c.unsent, r)
			continue
		}
		p.Delivered++
	}
	clear(c.msgs)
	if firstErr != nil {
		if err := c.k.authError(ctx, firstErr); err != nil {
			return p, err
		}
		return p, fmt.Errorf("sinks/kafka: produce to %s: %w", c.k.cfg.Topic, firstErr)
	}
	return p, nil
}

func (c *kafkaConn) Close() []*Record {
	c.mu.Lock()
	abandoned := c.closed
	c.mu.Unlock()
	if abandoned {
		// The writer may still be retrying: do not wait for it.
		go c.w.Close()
	} else {
		c.w.Close()
	}
	return c.unsent
}
