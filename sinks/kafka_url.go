package sinks

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// KafkaOptions are the Kafka outputs' settings; the query keys are the
// YAML keys, and a URL's user:password@ sets the SASL ones.
type KafkaOptions struct {
	Acks        string `yaml:"acks"`        // all (default), leader, none
	Compression string `yaml:"compression"` // none (default), gzip, snappy, lz4, zstd
	SASL        string `yaml:"sasl"`        // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	User        string `yaml:"user"`
	Password    string `yaml:"password"`
	// PasswordFile holds the password (a trailing newline is not part of
	// it), so that it is not on the command line for ps to show.
	PasswordFile string `yaml:"password_file"`
	TLS          bool   `yaml:"tls"` // implied by ca, cert or server_name
	TLSFiles     `yaml:",inline"`
	AutoCreate   bool `yaml:"auto_create"`
	// Partitions and ReplicationFactor size a topic that auto_create
	// creates; 0 leaves each to the broker's default.
	Partitions        int           `yaml:"partitions"`
	ReplicationFactor int           `yaml:"replication_factor"`
	BatchTimeout      time.Duration `yaml:"batch_timeout"`
}

// KafkaPasswordEnv names the environment variable that gives the SASL
// password when neither the URL nor the options do.
const KafkaPasswordEnv = "ECHOWATCH_KAFKA_PASSWORD"

// parseKafkaURL makes the destination of
// kafka://[user[:password]@]broker[:port][,broker...]/topic, with
// o.Kafka's options, which the query's and the URL's user override.
func parseKafkaURL(u *url.URL, q queryValues, o Options) (*Kafka, error) {
	ko := o.Kafka
	q.override("acks", &ko.Acks)
	q.override("compression", &ko.Compression)
	q.override("sasl", &ko.SASL)
	q.override("user", &ko.User)
	q.override("password", &ko.Password)
	q.override("password_file", &ko.PasswordFile)
	ko.TLSFiles.fromQuery(q)
	for key, p := range map[string]*bool{"tls": &ko.TLS, "auto_create": &ko.AutoCreate} {
		if v := q.take(key); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%s=%q: want true or false", key, v)
			}
			*p = b
		}
	}
	for key, p := range map[string]*int{"partitions": &ko.Partitions, "replication_factor": &ko.ReplicationFactor} {
		if v := q.take(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1<<20 {
				return nil, fmt.Errorf("%s=%q: want a number from 1", key, v)
			}
			*p = n
		}
	}
	if ko.Partitions < 0 || ko.ReplicationFactor < 0 {
		return nil, fmt.Errorf("partitions %d, replication_factor %d: neither may be negative", ko.Partitions, ko.ReplicationFactor)
	}
	if v := q.take("batch_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("batch_timeout=%q: want a duration such as 5ms", v)
		}
		ko.BatchTimeout = d
	}
	if err := q.done(); err != nil {
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
	cfg := KafkaConfig{
		Brokers: brokers, Topic: topic, Acks: ko.Acks, Compression: ko.Compression,
		SASL:       SASLConfig{Mechanism: ko.SASL, Username: ko.User, Password: ko.Password},
		AutoCreate: ko.AutoCreate, Partitions: ko.Partitions, ReplicationFactor: ko.ReplicationFactor,
		BatchTimeout: ko.BatchTimeout,
		SensorName:   o.SensorName,
	}
	// A CA, a certificate or a server name asks for TLS; a key goes with
	// a certificate.
	if ko.TLS || ko.CA != "" || ko.Cert != "" || ko.ServerName != "" {
		var err error
		if cfg.TLS, err = ko.TLSFiles.Config(); err != nil {
			return nil, err
		}
	}
	return NewKafka(cfg)
}

// resolvePassword sets the SASL password from password_file, or from the
// environment when nothing else gives one: both keep it out of ps.
func (ko *KafkaOptions) resolvePassword() error {
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
		ko.Password = os.Getenv(KafkaPasswordEnv)
	}
	return nil
}
