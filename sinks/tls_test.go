package sinks_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// TestTLSFromTheURL: syslog+tls and Kafka outputs take their CA, client
// certificate and server name from the URL's query alike, and a server
// that demands a client certificate accepts theirs.
func TestTLSFromTheURL(t *testing.T) {
	certs := sinkstest.NewCerts(t)
	certs.RequireClientCert = true
	files := "ca=" + url.QueryEscape(certs.CA) + "&cert=" + url.QueryEscape(certs.ClientCert) + "&key=" + url.QueryEscape(certs.ClientKey)
	a := sinkstest.Alert(1, 1)
	eve := a.AppendEVE(nil)

	t.Run("syslog", func(t *testing.T) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var mu sync.Mutex
		var got bytes.Buffer
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					b, _ := io.ReadAll(c) // a failed handshake reads nothing
					mu.Lock()
					got.Write(b)
					mu.Unlock()
				}()
			}
		}()
		received := func() bool {
			mu.Lock()
			defer mu.Unlock()
			return bytes.Contains(got.Bytes(), eve)
		}
		base := "syslog+tls://" + ln.Addr().String() + "?" + files
		if err := deliverOne(t, base+"&server_name=wrong.example", a); err == nil || received() {
			t.Errorf("server_name=wrong.example: delivered (%v)", err)
		}
		if err := deliverOne(t, base, a); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !received() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !received() {
			t.Error("the collector did not get the alert")
		}
	})
	t.Run("kafka", func(t *testing.T) {
		k := sinkstest.StartKafka(t, "alerts", 1, sinkstest.WithTLS(certs))
		if err := deliverOne(t, "kafka://"+k.Addr+"/alerts?"+files, a); err != nil {
			t.Fatal(err)
		}
		if recs := k.Records(1, 10*time.Second); len(recs) != 1 || !bytes.Equal(recs[0].Value, eve) {
			t.Errorf("the broker has %d records, want the alert", len(recs))
		}
	})
}

// deliverOne sends ev to the output of rawURL and closes it: its error
// says whether ev was delivered.
func deliverOne(t *testing.T, rawURL string, ev sinks.Event) error {
	t.Helper()
	out, err := sinks.ParseOutput(rawURL, sinks.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	q := sinks.NewQueue(out.Name, out.Dialer, sinks.QueueConfig{FlushTimeout: time.Second})
	if err := q.Start(context.Background()); err != nil {
		return err
	}
	q.Write(ev)
	return q.Close()
}

// TestTLSFilesErrors: each file that cannot serve says which it is.
func TestTLSFilesErrors(t *testing.T) {
	certs := sinkstest.NewCerts(t)
	for _, c := range []struct {
		files sinks.TLSFiles
		msg   string
	}{
		{sinks.TLSFiles{CA: "/nonexistent.pem"}, "ca: open /nonexistent.pem: no such file or directory"},
		{sinks.TLSFiles{CA: certs.ClientKey}, "ca " + certs.ClientKey + ": no PEM certificate in it"},
		{sinks.TLSFiles{Cert: certs.ClientCert}, "cert and key go together"},
		{sinks.TLSFiles{Key: certs.ClientKey}, "cert and key go together"},
		{sinks.TLSFiles{Cert: certs.ClientCert, Key: certs.ServerKey}, "cert: tls: private key does not match public key"},
	} {
		if _, err := c.files.Config(); err == nil || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want %s", c.files, err, c.msg)
		}
	}
	tc, err := sinks.TLSFiles{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey, ServerName: "logs.example.org"}.Config()
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "logs.example.org" || tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("%+v, %v", tc, err)
	}
}
