package sinks

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles are the settings of an output over TLS (syslog+tls, Kafka),
// as its URL's query and the config file give them: the query keys are
// the YAML keys.
type TLSFiles struct {
	CA         string `yaml:"ca"`          // PEM file of the CAs to trust; empty: the system's
	Cert       string `yaml:"cert"`        // PEM file of a client certificate
	Key        string `yaml:"key"`         // and of its key
	ServerName string `yaml:"server_name"` // name to check the server's certificate against; empty: the host's
}

// fromQuery takes the settings that q gives, which win over f's.
func (f *TLSFiles) fromQuery(q queryValues) {
	q.override("ca", &f.CA)
	q.override("cert", &f.Cert)
	q.override("key", &f.Key)
	q.override("server_name", &f.ServerName)
}

// Config reads the files into a client's configuration, TLS 1.2 at
// least. The files are read now, as the user the sensor runs as.
func (f TLSFiles) Config() (*tls.Config, error) {
	tc := &tls.Config{ServerName: f.ServerName, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate in it", f.CA)
		}
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("cert and key go together")
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
