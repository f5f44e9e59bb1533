package sinks

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"
)

// Options are the settings of the outputs: those every output shares
// (its queue), and those of each kind, which the config file gives under
// output_options and a URL's query overrides for its output.
type Options struct {
	QueueSize    int           `yaml:"queue_size"`
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	Syslog       SyslogOptions `yaml:"syslog"`
	Kafka        KafkaOptions  `yaml:"kafka"`

	// Set by the program, not the file.
	Format     Format `yaml:"-"` // standard output's
	SensorName string `yaml:"-"` // syslog's HOSTNAME; Kafka's key for stats events
	Version    string `yaml:"-"` // the program's, for CEF's header
	// Wait is how long an event waits for room in a full queue whose
	// destination is up and makes some (QueueConfig.Wait); WaitBudget, if
	// positive, bounds that waiting within a second for all the outputs
	// of a Fanout together (QueueConfig.Budget).
	Wait       time.Duration `yaml:"-"`
	WaitBudget time.Duration `yaml:"-"`
}

// DefaultOptions returns the options of an output that nothing sets.
func DefaultOptions() Options {
	return Options{QueueSize: 10000, FlushTimeout: 5 * time.Second}
}

// Output is one output as its URL describes it, not opened yet.
type Output struct {
	// Name is the URL without its password: for logs, stats and metrics.
	Name   string
	Dialer Dialer
	key    outputKey
}

// outputKey is what an output was made from: its URL and the options that
// apply to it. An output whose key a reload leaves as it was keeps
// running, queue and all (see Fanout.Prepare).
type outputKey struct {
	url          string
	queueSize    int
	flushTimeout time.Duration
	format       Format // standard output's
	sensorName   string // syslog's and Kafka's
	syslog       SyslogOptions
	kafka        KafkaOptions
}

// URLError is an output's URL, or one of its options, that cannot be
// used: the user's mistake, found without connecting anywhere.
type URLError struct {
	// Output is the output as it may be shown: its Name, or the text
	// given, quoted, when that is no URL.
	Output string
	Err    error
}

func (e *URLError) Error() string { return e.Output + ": " + e.Err.Error() }
func (e *URLError) Unwrap() error { return e.Err }

// ParseOutput turns an output's URL into its destination: stdout (or -),
// file:///path, syslog+udp|tcp|tls://host[:port], syslog+unix:///path or
// kafka://broker[:port][,broker...]/topic, each with its options in the
// query. It reads the files the options name (a CA, a certificate, a
// password), so that a mistake shows before anything runs, and connects
// to nothing. A stdout output writes to stdout. Its errors are URLErrors.
func ParseOutput(raw string, o Options, stdout io.Writer) (Output, error) {
	key := outputKey{url: raw, queueSize: o.QueueSize, flushTimeout: o.FlushTimeout}
	if raw == "stdout" || raw == "-" {
		key.format = o.Format
		return Output{Name: "stdout", Dialer: &Writer{W: stdout, Format: o.Format}, key: key}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return Output{}, &URLError{Output: strconv.Quote(raw),
			Err: errors.New("not a URL (want stdout, file:///path, syslog+udp|tcp|tls://host:port, syslog+unix:///path or kafka://broker:port/topic)")}
	}
	out := Output{Name: redact(u), key: key}
	q := queryValues(u.Query())
	switch u.Scheme {
	case "file":
		out.Dialer, err = parseFileURL(u, q)
	case "syslog+udp", "syslog+tcp", "syslog+tls", "syslog+unix":
		out.key.sensorName, out.key.syslog = o.SensorName, o.Syslog
		out.Dialer, err = parseSyslogURL(u, q, o)
	case "kafka":
		out.key.sensorName, out.key.kafka = o.SensorName, o.Kafka
		out.Dialer, err = parseKafkaURL(u, q, o)
	default:
		err = fmt.Errorf("unknown scheme %q (want stdout, file, syslog+udp, syslog+tcp, syslog+tls, syslog+unix or kafka)", u.Scheme)
	}
	if err != nil {
		return Output{}, &URLError{Output: out.Name, Err: err}
	}
	return out, nil
}

// queryValues are the options in a URL's query; each parser takes those
// it knows, and refuses the rest (done).
type queryValues url.Values

// take returns a value and removes it.
func (q queryValues) take(key string) string {
	v := url.Values(q).Get(key)
	delete(q, key)
	return v
}

// override sets *p from the query when the query has key.
func (q queryValues) override(key string, p *string) {
	if url.Values(q).Has(key) {
		*p = q.take(key)
	}
}

// done refuses the keys nothing took: a misspelt option is not silently
// ignored.
func (q queryValues) done() error {
	for k := range q {
		return fmt.Errorf("unknown option %q", k)
	}
	return nil
}

// checkPort refuses a port that cannot exist; empty is the default port.
func checkPort(port string) error {
	if n, err := strconv.ParseUint(port, 10, 16); port != "" && (err != nil || n == 0) {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
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
