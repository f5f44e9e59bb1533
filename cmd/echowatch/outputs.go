package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

// outputOptions are the settings every output shares: --queue-size,
// --flush-timeout, and the config file's output_options, which a URL's
// query overrides for its output.
type outputOptions struct {
	QueueSize    int           `yaml:"queue_size"`
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	Syslog       syslogOptions `yaml:"syslog"`
	Kafka        kafkaOptions  `yaml:"kafka"`

	// Set by main, not the file.
	Format     sinks.Format `yaml:"-"` // standard output's (--format)
	SensorName string       `yaml:"-"`
	Version    string       `yaml:"-"`
	// Wait is how long an event waits for room in a full queue whose
	// destination is up and makes none (sinks.QueueConfig.Wait): the
	// flush timeout when reading files, which may go as slowly as the
	// outputs; live, liveWait within liveWaitBudget a second for all the
	// outputs together.
	Wait       time.Duration `yaml:"-"`
	WaitBudget time.Duration `yaml:"-"`
}

// syslogOptions are the syslog outputs' settings; the query keys are the
// same as the YAML keys.
type syslogOptions struct {
	Format     string `yaml:"format"`      // 5424 (default), 3164 or cef
	Facility   string `yaml:"facility"`    // local0 (default) to local7, user, daemon...
	CA         string `yaml:"ca"`          // PEM file of the CAs to trust (tls)
	Cert       string `yaml:"cert"`        // client certificate (tls)
	Key        string `yaml:"key"`         // its key
	ServerName string `yaml:"server_name"` // name to check the server's certificate against
}

// kafkaOptions are the Kafka outputs' settings; the query keys are the
// same as the YAML keys, and a URL's user:password@ sets the SASL ones.
type kafkaOptions struct {
	Acks        string `yaml:"acks"`        // all (default), leader, none
	Compression string `yaml:"compression"` // none (default), gzip, snappy, lz4, zstd
	SASL        string `yaml:"sasl"`        // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	User        string `yaml:"user"`
	Password    string `yaml:"password"`
	// PasswordFile holds the password (a trailing newline is not part of
	// it), so that it is not on the command line for ps to show.
	PasswordFile string        `yaml:"password_file"`
	TLS          bool          `yaml:"tls"` // implied by ca, cert or server_name
	CA           string        `yaml:"ca"`
	Cert         string        `yaml:"cert"`
	Key          string        `yaml:"key"`
	ServerName   string        `yaml:"server_name"`
	AutoCreate   bool          `yaml:"auto_create"`
	BatchTimeout time.Duration `yaml:"batch_timeout"`
}

func defaultOutputOptions() outputOptions {
	return outputOptions{QueueSize: 10000, FlushTimeout: 5 * time.Second}
}

// outputs hands each event to every output. Writing never blocks: each
// output has its own queue, and what a full queue drops is counted.
//
// WriteAlert, Write and swap are called by one goroutine at a time (the
// engine's); Close once they are done. Stats, Lost, Reopen, prepare and
// discard may be called from any goroutine: the set of outputs a reload
// swaps in is published with one atomic store, so the writer pays one
// atomic load per event for it.
type outputs struct {
	cur    atomic.Pointer[outputSet]
	stdout io.Writer // for a stdout output a reload adds
	logger *slog.Logger

	mu     sync.Mutex
	closed bool
	plans  map[*outputPlan]struct{} // prepared, neither swapped in nor discarded
	// Outputs removed by reloads close in the background (retiring);
	// once closed, only what they lost and their error are kept.
	retiring    sync.WaitGroup
	closing     map[*sinks.Queue]struct{} // removed, still closing
	retiredLost uint64                    // events lost by those closed
	retiredErrs []error                   // their close errors

	closeOnce sync.Once
	closeErr  error

	// waits is the live outputs' shared budget of waiting (see liveWait),
	// made for the first output that needs it; reloads keep it.
	waits *sinks.WaitBudget
}

var _ detect.AlertWriter = (*outputs)(nil)

// budget returns the outputs' shared budget of waiting for room, of per a
// second. It is called by build, which reloads serialise.
func (o *outputs) budget(per time.Duration) *sinks.WaitBudget {
	if o.waits == nil {
		o.waits = sinks.NewWaitBudget(per)
	}
	return o.waits
}

// outputSet is the outputs in use, in the order they were given. It is not
// modified once published.
type outputSet struct {
	queues []*sinks.Queue
	keys   []outputKey    // what queues[i] was opened from
	files  []*sinks.Queue // reopened by Reopen
}

// outputKey is what an output was opened from: its URL and the options
// that apply to it. An output whose key a reload leaves as it was keeps
// running, queue and all.
type outputKey struct {
	url          string
	queueSize    int
	flushTimeout time.Duration
	format       sinks.Format // standard output's
	sensorName   string       // syslog's and Kafka's
	syslog       syslogOptions
	kafka        kafkaOptions
}

// keyOf returns the key of the output parseOutput made from raw: its URL
// and the options that destination d takes.
func keyOf(raw string, o outputOptions, d sinks.Dialer) outputKey {
	k := outputKey{url: raw, queueSize: o.QueueSize, flushTimeout: o.FlushTimeout}
	switch d.(type) {
	case *sinks.Writer:
		k.format = o.Format
	case *sinks.Syslog:
		k.sensorName, k.syslog = o.SensorName, o.Syslog
	case *sinks.Kafka:
		k.sensorName, k.kafka = o.SensorName, o.Kafka
	}
	return k
}

// outputPlan is a set of outputs ready to replace the current one: those
// kept from it, and those opened for it (fresh), already started.
type outputPlan struct {
	set   *outputSet
	fresh []*sinks.Queue
}

// outputStats is one output's counters, for the stats event and metrics.
type outputStats struct {
	Name string `json:"name"`
	sinks.QueueStats
}

// validateOutputs checks the --output URLs and their options without
// touching the network or the files: a mistake is a usage error.
func validateOutputs(urls []string, o outputOptions) error {
	for _, raw := range urls {
		if _, _, err := parseOutput(raw, o, io.Discard); err != nil {
			return err
		}
	}
	return nil
}

// outputOptionsFor returns the options of cfg's outputs, with the settings
// main adds to the file's. live is whether the run captures live, as it
// started: a reload does not change it.
func outputOptionsFor(cfg config, live bool) (outputOptions, error) {
	format, err := sinks.ParseFormat(cfg.Format)
	if err != nil {
		return outputOptions{}, usagef("--format: %v", err)
	}
	o := cfg.OutputOptions
	o.Format, o.SensorName, o.Version = format, cfg.SensorName, version
	o.Wait = o.FlushTimeout
	if live {
		o.Wait, o.WaitBudget = liveWait, liveWaitBudget
	}
	return o, nil
}

// A live sensor waits for room in an output's queue only while its
// destination keeps up, and at most liveWaitBudget in a second for all
// its outputs together: enough for a burst of alerts larger than a queue
// to reach its destination, never so long that the capture falls behind
// (the kernel's buffer holds far more).
const (
	liveWait       = 50 * time.Millisecond
	liveWaitBudget = 100 * time.Millisecond
)

// openOutputs builds and starts the outputs. It fails when an output is
// misconfigured in a way only the destination can tell (a Kafka topic that
// does not exist, a file that cannot be opened); one that cannot be
// reached yet is logged as down and tried again in the background.
func openOutputs(ctx context.Context, urls []string, o outputOptions, stdout io.Writer, logger *slog.Logger) (*outputs, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	outs := &outputs{stdout: stdout, logger: logger}
	set, _, err := outs.build(ctx, urls, o, &outputSet{})
	if err != nil {
		return nil, err
	}
	outs.cur.Store(set)
	return outs, nil
}

// build returns the set of outputs for urls and opts: the queues of base
// opened from the same URL and options, and new ones, started, for the
// others (fresh). On an error it closes those it opened.
func (o *outputs) build(ctx context.Context, urls []string, opts outputOptions, base *outputSet) (set *outputSet, fresh []*sinks.Queue, err error) {
	set = &outputSet{}
	taken := make([]bool, len(base.queues))
	qcfg := sinks.QueueConfig{Size: opts.QueueSize, FlushTimeout: opts.FlushTimeout, Wait: opts.Wait,
		Logger: o.logger}
	if opts.WaitBudget > 0 {
		qcfg.Budget = o.budget(opts.WaitBudget)
	}
	for _, raw := range urls {
		name, d, err := parseOutput(raw, opts, o.stdout) // reads key files, connects to nothing
		if err != nil {
			closeQueues(fresh)
			return nil, nil, err
		}
		key := keyOf(raw, opts, d)
		q := base.take(taken, key)
		if q == nil {
			q = sinks.NewQueue(name, d, qcfg)
			fresh = append(fresh, q)
			if err := q.Start(ctx); err != nil {
				closeQueues(fresh)
				return nil, nil, fmt.Errorf("output %s: %w", name, err)
			}
		}
		set.queues = append(set.queues, q)
		set.keys = append(set.keys, key)
		if _, isFile := d.(*sinks.File); isFile {
			set.files = append(set.files, q)
		}
	}
	return set, fresh, nil
}

// take returns the first queue of s opened from key that is not taken
// yet, if any, and marks it taken.
func (s *outputSet) take(taken []bool, key outputKey) *sinks.Queue {
	for i, k := range s.keys {
		if !taken[i] && k == key {
			taken[i] = true
			return s.queues[i]
		}
	}
	return nil
}

// prepare opens what a reload to urls and opts adds to the current
// outputs, without touching those in use: swap puts the plan in place,
// discard drops it. An output that fails its start-up check fails the
// whole plan. The current set must not change until the plan is swapped
// in or discarded: the reloader sees to that.
func (o *outputs) prepare(ctx context.Context, urls []string, opts outputOptions) (*outputPlan, error) {
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return nil, errors.New("outputs: closed")
	}
	set, fresh, err := o.build(ctx, urls, opts, o.cur.Load())
	if err != nil {
		return nil, err
	}
	p := &outputPlan{set: set, fresh: fresh}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		closeQueues(fresh)
		return nil, errors.New("outputs: closed")
	}
	if o.plans == nil {
		o.plans = map[*outputPlan]struct{}{}
	}
	o.plans[p] = struct{}{}
	return p, nil
}

// swap makes p's outputs the ones written to, tells changed the names of
// the outputs it adds and removes, then closes those removed in the
// background, each flushing for at most its flush timeout; their losses
// are logged, and counted by Lost and Close. It is called by the writer.
func (o *outputs) swap(p *outputPlan, changed func(added, removed []string)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.plans[p]; !ok || o.closed {
		return // discarded, or after Close: nothing is written any more
	}
	delete(o.plans, p)
	old := o.cur.Swap(p.set)
	var added, removed []string
	var gone []*sinks.Queue
	for _, q := range p.fresh {
		added = append(added, q.Name())
	}
	for _, q := range old.queues {
		if !slices.Contains(p.set.queues, q) {
			removed = append(removed, q.Name())
			gone = append(gone, q)
		}
	}
	changed(added, removed)
	if o.closing == nil {
		o.closing = map[*sinks.Queue]struct{}{}
	}
	for _, q := range gone {
		o.closing[q] = struct{}{}
		o.retiring.Go(func() {
			err := q.Close()
			if err != nil {
				o.logLoss(q)
			} else {
				o.logger.Info("output closed", "output", q.Name(), "delivered", q.Stats().Delivered)
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			delete(o.closing, q)
			o.retiredLost += q.Stats().Lost()
			if err != nil {
				o.retiredErrs = append(o.retiredErrs, err)
			}
		})
	}
}

// discard closes, in the background, the outputs opened for p, which was
// never swapped in; they were given nothing.
func (o *outputs) discard(p *outputPlan) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.plans[p]; ok {
		delete(o.plans, p)
		// Under the lock, so that Close, which marks the outputs closed
		// under it too, waits for these.
		o.retiring.Go(func() { closeQueues(p.fresh) })
	}
}

// closeQueues closes qs at once and waits for them.
func closeQueues(qs []*sinks.Queue) []error {
	errs := make([]error, len(qs))
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Go(func() { errs[i] = q.Close() })
	}
	wg.Wait()
	return errs
}

// WriteAlert implements detect.AlertWriter.
func (o *outputs) WriteAlert(a *detect.Alert) { o.Write(a) }

// Write renders ev once and queues it on every output. ev is not kept.
func (o *outputs) Write(ev sinks.Event) {
	set := o.cur.Load()
	if len(set.queues) == 0 {
		return
	}
	r := sinks.NewRecord(ev)
	for _, q := range set.queues {
		q.Enqueue(r) // a full queue counts the drop
	}
}

// Reopen makes file outputs reopen their paths, after logrotate moved
// them: main calls it on SIGHUP.
func (o *outputs) Reopen() {
	for _, q := range o.cur.Load().files {
		q.Redial()
	}
}

// Stats returns the counters of every output in use.
func (o *outputs) Stats() []outputStats {
	set := o.cur.Load()
	st := make([]outputStats, len(set.queues))
	for i, q := range set.queues {
		st[i] = outputStats{Name: q.Name(), QueueStats: q.Stats()}
	}
	return st
}

// Lost returns the events that outputs, including those a reload removed,
// dropped, had refused or could not deliver: an offline run with any exits
// non-zero.
func (o *outputs) Lost() uint64 {
	var n uint64
	for _, q := range o.cur.Load().queues {
		n += q.Stats().Lost()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for q := range o.closing {
		n += q.Stats().Lost()
	}
	return n + o.retiredLost
}

// Close flushes every output at once, each for at most the flush timeout,
// logs the counters of those that lost events and returns an error that
// says what was lost, if anything was, by the outputs in use and by those
// a reload removed (whose close it waits for). It is safe to call twice.
func (o *outputs) Close() error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closed = true
		var unused []*sinks.Queue
		for p := range o.plans {
			unused = append(unused, p.fresh...)
		}
		o.plans = nil
		o.mu.Unlock()
		closeQueues(unused) // given nothing: they close at once

		queues := o.cur.Load().queues
		errs := closeQueues(queues)
		for i, q := range queues {
			if errs[i] != nil {
				o.logLoss(q)
			}
		}
		o.retiring.Wait()
		o.mu.Lock()
		errs = append(errs, o.retiredErrs...)
		o.mu.Unlock()
		o.closeErr = errors.Join(errs...)
	})
	return o.closeErr
}

// logLoss logs the counters of q, which lost events.
func (o *outputs) logLoss(q *sinks.Queue) {
	s := q.Stats()
	o.logger.Warn("output lost events", "output", q.Name(), "produced", s.Produced, "delivered", s.Delivered,
		"dropped", s.Dropped, "rejected", s.Rejected, "undelivered", s.Undelivered)
}

// parseOutput turns one --output URL into a destination and the name it
// goes by in logs and stats (without a password).
func parseOutput(raw string, o outputOptions, stdout io.Writer) (name string, d sinks.Dialer, err error) {
	if raw == "stdout" || raw == "-" {
		return "stdout", &sinks.Writer{W: stdout, Format: o.Format}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", nil, usagef("--output %q: not a URL (want stdout, file:///path, syslog+udp|tcp|tls://host:port, syslog+unix:///path or kafka://broker:port/topic)", raw)
	}
	q := u.Query()
	name = redact(u)
	bad := func(format string, args ...any) error {
		return usagef("--output %s: %s", name, fmt.Sprintf(format, args...))
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" || u.Path == "" {
			return "", nil, bad("want file:///absolute/path")
		}
		f := &sinks.File{Path: u.Path}
		if v := take(q, "format"); v != "" {
			var err error
			if f.Format, err = sinks.ParseFormat(v); err != nil {
				return "", nil, bad("format %q: want eve or text", v)
			}
		}
		if err := noneLeft(q); err != nil {
			return "", nil, bad("%v", err)
		}
		return name, f, nil
	case "syslog+udp", "syslog+tcp", "syslog+tls", "syslog+unix":
		d, err := parseSyslog(u, q, o)
		if err != nil {
			return "", nil, bad("%v", err)
		}
		return name, d, nil
	case "kafka":
		d, err := parseKafka(u, q, o)
		if err != nil {
			return "", nil, bad("%v", err)
		}
		return name, d, nil
	}
	return "", nil, bad("unknown scheme %q (want stdout, file, syslog+udp, syslog+tcp, syslog+tls, syslog+unix or kafka)", u.Scheme)
}

func parseSyslog(u *url.URL, q url.Values, o outputOptions) (sinks.Dialer, error) {
	so := o.Syslog
	override(q, "format", &so.Format)
	override(q, "facility", &so.Facility)
	override(q, "ca", &so.CA)
	override(q, "cert", &so.Cert)
	override(q, "key", &so.Key)
	override(q, "server_name", &so.ServerName)
	if err := noneLeft(q); err != nil {
		return nil, err
	}
	cfg := sinks.SyslogConfig{
		Network:  strings.TrimPrefix(u.Scheme, "syslog+"),
		Addr:     u.Host,
		Hostname: o.SensorName,
		Version:  o.Version,
	}
	if cfg.Network == "unix" {
		if u.Host != "" || u.Path == "" {
			return nil, errors.New("want syslog+unix:///path/to/socket")
		}
		cfg.Addr = u.Path
	} else if err := checkPort(u.Port()); err != nil {
		return nil, err
	} else if u.Port() == "" {
		// The IANA ports: 514 for syslog over UDP and TCP, 6514 over TLS.
		port := "514"
		if cfg.Network == "tls" {
			port = "6514"
		}
		cfg.Addr = net.JoinHostPort(u.Hostname(), port)
	}
	var err error
	if cfg.Format, err = sinks.ParseSyslogFormat(so.Format); err != nil {
		return nil, err
	}
	if so.Facility != "" {
		if cfg.Facility, err = sinks.ParseFacility(so.Facility); err != nil {
			return nil, err
		}
	}
	if cfg.Network == "tls" {
		if cfg.TLS, err = tlsConfig(so.CA, so.Cert, so.Key, so.ServerName); err != nil {
			return nil, err
		}
	} else if so.CA != "" || so.Cert != "" || so.Key != "" || so.ServerName != "" {
		return nil, errors.New("ca, cert, key and server_name need syslog+tls")
	}
	return sinks.NewSyslog(cfg)
}

func parseKafka(u *url.URL, q url.Values, o outputOptions) (sinks.Dialer, error) {
	ko := o.Kafka
	override(q, "acks", &ko.Acks)
	override(q, "compression", &ko.Compression)
	override(q, "sasl", &ko.SASL)
	override(q, "user", &ko.User)
	override(q, "password", &ko.Password)
	override(q, "password_file", &ko.PasswordFile)
	override(q, "ca", &ko.CA)
	override(q, "cert", &ko.Cert)
	override(q, "key", &ko.Key)
	override(q, "server_name", &ko.ServerName)
	for key, p := range map[string]*bool{"tls": &ko.TLS, "auto_create": &ko.AutoCreate} {
		if v := take(q, key); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%s=%q: want true or false", key, v)
			}
			*p = b
		}
	}
	if v := take(q, "batch_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("batch_timeout=%q: want a duration such as 5ms", v)
		}
		ko.BatchTimeout = d
	}
	if err := noneLeft(q); err != nil {
		return nil, err
	}
	if u.User != nil {
		ko.User = u.User.Username()
		if p, ok := u.User.Password(); ok {
			ko.Password = p
		}
		if ko.SASL == "" {
			ko.SASL = "SCRAM-SHA-512"
		}
	}
	if err := ko.resolvePassword(); err != nil {
		return nil, err
	}
	topic := strings.TrimPrefix(u.Path, "/")
	if topic == "" {
		return nil, errors.New("no topic: want kafka://broker:9092[,broker2:9092]/topic")
	}
	var brokers []string
	for _, b := range strings.Split(u.Host, ",") {
		if b == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(b); err != nil {
			b = net.JoinHostPort(b, "9092")
		} else if err := checkPort(port); err != nil {
			return nil, fmt.Errorf("broker %s: %w", b, err)
		}
		brokers = append(brokers, b)
	}
	cfg := sinks.KafkaConfig{
		Brokers: brokers, Topic: topic, Acks: ko.Acks, Compression: ko.Compression,
		SASL:       sinks.SASLConfig{Mechanism: ko.SASL, Username: ko.User, Password: ko.Password},
		AutoCreate: ko.AutoCreate, BatchTimeout: ko.BatchTimeout,
		SensorName: o.SensorName,
	}
	if ko.TLS || ko.CA != "" || ko.Cert != "" || ko.ServerName != "" {
		var err error
		if cfg.TLS, err = tlsConfig(ko.CA, ko.Cert, ko.Key, ko.ServerName); err != nil {
			return nil, err
		}
	}
	return sinks.NewKafka(cfg)
}

// kafkaPasswordEnv names the environment variable that gives the SASL
// password when neither the URL nor the options do.
const kafkaPasswordEnv = "ECHOWATCH_KAFKA_PASSWORD"

// resolvePassword sets the SASL password from password_file, or from the
// environment when nothing else gives one: both keep it out of ps.
func (ko *kafkaOptions) resolvePassword() error {
	if ko.PasswordFile != "" {
		if ko.Password != "" {
			return errors.New("password and password_file: give one or the other")
		}
		b, err := os.ReadFile(ko.PasswordFile)
		if err != nil {
			return fmt.Errorf("password_file: %w", err)
		}
		ko.Password = strings.TrimRight(string(b), "\r\n")
		if ko.Password == "" {
			return fmt.Errorf("password_file %s: empty", ko.PasswordFile)
		}
		return nil
	}
	if ko.Password == "" && ko.User != "" {
		ko.Password = os.Getenv(kafkaPasswordEnv)
	}
	return nil
}

// tlsConfig loads the CA to trust (the system's when empty) and a client
// certificate.
func tlsConfig(ca, cert, key, serverName string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate in it", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("cert and key go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// checkPort refuses a port that cannot exist; empty is the default port.
func checkPort(port string) error {
	if n, ok := portNumber(port); port != "" && (!ok || n == 0) {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return nil
}

// portNumber parses a TCP or UDP port number, 0 included.
func portNumber(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// take returns a query value and removes it.
func take(q url.Values, key string) string {
	v := q.Get(key)
	q.Del(key)
	return v
}

// override sets *p from the query when the query has key.
func override(q url.Values, key string, p *string) {
	if q.Has(key) {
		*p = take(q, key)
	}
}

// noneLeft refuses query keys nothing took: a misspelt option is not
// silently ignored.
func noneLeft(q url.Values) error {
	for k := range q {
		return fmt.Errorf("unknown option %q", k)
	}
	return nil
}

// redact returns the URL without its password, for logs and stats.
func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, ok := c.User.Password(); ok {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		}
	}
	q := c.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.String()
}
