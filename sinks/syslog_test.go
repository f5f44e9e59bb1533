package sinks_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// stats stands for the sensor's stats event, which is not an alert.
type stats struct{}

func (stats) AppendEVE(b []byte) []byte {
	return append(b, `{"timestamp":"2024-05-01T12:00:00.000000+0000","event_type":"stats","host":"sensor-1","stats":{"decoder":{"frames":10}}}`...)
}
func (stats) AppendText(b []byte) []byte { return append(b, "stats: frames 10"...) }
func (stats) EventMeta() (string, time.Time) {
	return "stats", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
}

// TestSyslogParsedByRsyslog sends alerts in each format and checks what
// rsyslog made of them: the fields we meant, the EVE JSON intact.
func TestSyslogParsedByRsyslog(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	a := sinkstest.Alert(3, 5)
	a.Incident.ID = `tricky"id\with]brackets` // structured data must escape these
	a.Incident.Phase = detect.PhaseStart
	eve := string(a.AppendEVE(nil))
	for _, network := range []string{"udp", "tcp", "tls", "unix"} {
		t.Run(network+"/5424", func(t *testing.T) {
			r := sinkstest.StartRsyslog(t, network)
			q := startQueue(t, newSyslog(t, r, sinks.RFC5424))
			q.Write(a)
			q.Write(stats{})
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			msgs := r.WaitMessages(2, 10*time.Second)
			if len(msgs) != 2 {
				t.Fatalf("rsyslog got %d messages: %+v", len(msgs), msgs)
			}
			m := msgs[0]
			want := sinkstest.SyslogMessage{
				PRI: "131", Severity: "3", Facility: "16", Version: "1", Time: "2024-05-01T12:00:05.000000Z",
				Hostname: "sensor-1", AppName: "echowatch", ProcID: pid, MsgID: "reflection",
				SD:  `[echowatch@32473 kind="reflection" phase="start" id="tricky\"id\\with\]brackets" sid="9000001"]`,
				Tag: "echowatch[" + pid + "]", Msg: eve, Raw: m.Raw,
			}
			if network == "unix" {
				want.Time = m.Time // rsyslog stamps local messages itself
			}
			if m != want {
				t.Errorf("rsyslog parsed\n%+v\nwant\n%+v", m, want)
			}
			st := msgs[1]
			if st.MsgID != "stats" || st.SD != "-" || st.Severity != "6" || !strings.Contains(st.Msg, `"event_type":"stats"`) {
				t.Errorf("stats event parsed as %+v", st)
			}
		})
	}
	// sendOne sends a in format over TCP and returns what rsyslog parsed.
	sendOne := func(t *testing.T, format sinks.SyslogFormat) sinkstest.SyslogMessage {
		t.Helper()
		r := sinkstest.StartRsyslog(t, "tcp")
		q := startQueue(t, newSyslog(t, r, format))
		q.Write(a)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		msgs := r.WaitMessages(1, 10*time.Second)
		if len(msgs) != 1 {
			t.Fatalf("rsyslog got %+v", msgs)
		}
		return msgs[0]
	}
	t.Run("tcp/3164", func(t *testing.T) {
		m := sendOne(t, sinks.RFC3164)
		if m.PRI != "131" || m.Hostname != "sensor-1" || m.Tag != "echowatch["+pid+"]:" ||
			m.AppName != "echowatch" || strings.TrimPrefix(m.Msg, " ") != eve {
			t.Errorf("rsyslog parsed %+v", m)
		}
	})
	t.Run("tcp/cef", func(t *testing.T) {
		m := sendOne(t, sinks.CEF)
		cef := m.Raw[strings.Index(m.Raw, "CEF:"):]
		if m.PRI != "131" || m.Hostname != "sensor-1" ||
			!strings.HasPrefix(cef, "CEF:0|echowatch|echowatch|1.2.3|9000001|ECHOWATCH small-service reflection toward victim|5|rt=1714564805000 dvchost=sensor-1 ") ||
			!strings.Contains(cef, ` externalId=tricky"id\\with]brackets `) || !strings.Contains(cef, " cs3Label=key cs3=192.0.2.3 ") {
			t.Errorf("rsyslog got %+v", m)
		}
	})
}

// TestSyslogCollectorRestart stops and restarts rsyslog while alerts
// stream in over TCP and TLS: none is lost, each incident's arrive in
// order (some twice: at least once).
func TestSyslogCollectorRestart(t *testing.T) {
	for _, network := range []string{"tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			r := sinkstest.StartRsyslog(t, network)
			q := startQueue(t, newSyslog(t, r, sinks.RFC5424))
			const n = 3000
			done := streamAlerts(t, q, n)
			time.Sleep(500 * time.Millisecond)
			r.Stop()
			time.Sleep(300 * time.Millisecond)
			r.Start()
			time.Sleep(300 * time.Millisecond)
			r.Stop() // and once more, quicker
			r.Start()
			<-done
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if s := q.Stats(); s.Delivered != n || s.Lost() != 0 {
				t.Fatalf("stats %+v", s)
			}
			var eve []string
			for _, m := range r.WaitMessages(n, 10*time.Second) {
				eve = append(eve, m.Msg)
			}
			checkAllInOrder(t, eve, 5, n/5)
		})
	}
}

// streamAlerts writes n alerts of 5 incidents to q, one every half
// millisecond, and closes the channel it returns when done.
func streamAlerts(t *testing.T, q *sinks.Queue, n int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if err := q.Write(sinkstest.Alert(i%5, i/5)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond / 2)
		}
	}()
	return done
}

func startQueue(t *testing.T, d sinks.Dialer) *sinks.Queue {
	t.Helper()
	q := sinks.NewQueue(t.Name(), d, sinks.QueueConfig{BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, FlushTimeout: 20 * time.Second})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// checkAllInOrder checks that keys incidents of per alerts each arrived,
// each incident's in order of first arrival.
func checkAllInOrder(t *testing.T, eve []string, keys, per int) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	dups := 0
	for _, e := range eve {
		if seen[e] {
			dups++
			continue
		}
		seen[e] = true
		id, seq, err := sinkstest.Parse(e)
		if err != nil {
			t.Fatalf("%v: %q", err, e)
		}
		if seq != next[id] {
			t.Fatalf("%s: alert %d arrived when %d was due", id, seq, next[id])
		}
		next[id]++
	}
	for id, n := range next {
		if n != per {
			t.Errorf("%s: %d of %d alerts arrived", id, n, per)
		}
	}
	if len(next) != keys {
		t.Errorf("%d incidents arrived, want %d", len(next), keys)
	}
	t.Logf("%d alerts, %d repeated after a failure", len(seen), dups)
}

// TestSyslogPeerKeepsItsSideOpen: a collector that reads everything but
// never closes its side of the connection, not even after our end of
// stream. What it acknowledged is delivered: Close reports no loss, well
// within the flush timeout.
func TestSyslogPeerKeepsItsSideOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	over := make(chan struct{})
	defer close(over)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close() // only once the test is over: ln.Close does not end c
		var all []byte
		buf := make([]byte, 4096)
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil { // our end of stream, or the deadline
				got <- all
				<-over // and keep the connection open
				return
			}
		}
	}()
	s, err := sinks.NewSyslog(sinks.SyslogConfig{Network: "tcp", Addr: ln.Addr().String(), Hostname: "sensor-1"})
	if err != nil {
		t.Fatal(err)
	}
	q := sinks.NewQueue("syslog", s, sinks.QueueConfig{FlushTimeout: 3 * time.Second})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := q.Write(sinkstest.Alert(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := q.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if st := q.Stats(); st.Delivered != 4 || st.Lost() != 0 {
		t.Errorf("stats %+v, want 4 delivered", st)
	}
	select {
	case b := <-got:
		if bytes.Count(b, []byte(`"event_type":"alert"`)) != 4 {
			t.Errorf("the collector read %q, want 4 alerts", b)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the collector read nothing to its end of stream")
	}
}

// TestSyslogSmallQueueThroughput: reading files (the writer waits for
// room), a queue of 10 events delivers about as fast as the default one:
// the size bounds what is held, not the rate.
func TestSyslogSmallQueueThroughput(t *testing.T) {
	r := sinkstest.StartRsyslog(t, "tcp")
	// Each round of 10 waits a poll of 1ms for rsyslog's
	// acknowledgement.
	checkSmallQueueThroughput(t, func() sinks.Dialer { return newSyslog(t, r, sinks.RFC5424) })
}
