package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSyslogCollectorKeepsItsSideOpen: a TCP syslog collector that reads
// everything but keeps its side of the connection open after our end of
// stream. The offline run delivers the demo's alerts and exits 0.
func TestSyslogCollectorKeepsItsSideOpen(t *testing.T) {
	_, ref, _ := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve")
	want := strings.Count(ref, `"event_type":"alert"`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	hold := make(chan struct{})
	defer close(hold)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // up to our end of stream
		got <- b
		<-hold // the connection stays open until the test ends
	}()
	code, _, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--output", "syslog+tcp://"+ln.Addr().String(),
		"--flush-timeout", "3s")
	if code != 0 || strings.Contains(errOut, "not delivered") {
		t.Errorf("exit %d, stderr %q: want 0 and every alert delivered", code, errOut)
	}
	select {
	case b := <-got:
		if n := bytes.Count(b, []byte(`"event_type":"alert"`)); n != want || n == 0 {
			t.Errorf("the collector read %d alerts, want %d", n, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the collector never saw our end of stream")
	}
}
