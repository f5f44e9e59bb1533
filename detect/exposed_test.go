package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

func TestExposedEchoMonitor(t *testing.T) {
	// A monitor probes echo once a second from a new port for 10 minutes:
	// one exposure, nothing else.
	h := newHarness(t, homeConfig())
	for i := range 600 {
		ts := at(time.Duration(i) * time.Second)
		client := fmt.Sprintf("81.2.0.10:%d", 30000+i)
		h.feed(udp(ts, client, "10.1.0.7:7", []byte("ping")),
			udp(ts.Add(300*time.Microsecond), "10.1.0.7:7", client, []byte("ping")))
	}
	h.flush()
	h.expect("exposed/start/9000008 UDP/10.1.0.7:7", "exposed/end/9000008 UDP/10.1.0.7:7")
	a := h.out.alerts[0]
	if a.Src.String() != "10.1.0.7:7" || a.Dst.String() != "81.2.0.10:30000" || a.Incident.Service != "echo" ||
		a.Incident.Direction != "inbound" || a.CommunityID == "" || a.Incident.Packets != 2 ||
		a.Incident.Requests != 1 || a.Incident.Replies != 1 {
		t.Errorf("alert %+v", a)
	}
	// The end, at the end of the input, counts every probe and answer; it
	// names the client the start named.
	last := at(599*time.Second + 300*time.Microsecond)
	end := h.out.alerts[1]
	if in := end.Incident; !end.Time.Equal(last) || !in.LastSeen.Equal(last) || !in.FirstSeen.Equal(base) ||
		in.Requests != 600 || in.Replies != 600 || in.Packets != 1200 || in.Bytes != 1200*46 ||
		end.Dst != a.Dst || end.CommunityID != a.CommunityID || in.ID != a.Incident.ID {
		t.Errorf("end at %v to %v: %+v", end.Time, end.Dst, in)
	}
	want := "2024-01-01T00:09:59.000300+0000 [1:9000008:1] exposed UDP echo end on 10.1.0.7:7 answered 81.2.0.10 (600 requests, 600 replies) inbound id " + a.Incident.ID
	if got := string(end.AppendText(nil)); got != want {
		t.Errorf("text:\n got %s\nwant %s", got, want)
	}
}

func TestExposed(t *testing.T) {
	tests := []struct {
		name string
		pkts []*capture.Packet
		want []string
	}{
		{"tcp syn-ack", []*capture.Packet{
			tcp(at(0), "81.2.0.10:40000", "10.1.0.19:19", capture.TCPSyn, nil),
			tcp(at(time.Millisecond), "10.1.0.19:19", "81.2.0.10:40000", capture.TCPSyn|capture.TCPAck, nil),
		}, []string{"exposed/start/9000009 TCP/10.1.0.19:19", "exposed/end/9000009 TCP/10.1.0.19:19"}},
		{"tcp rst", []*capture.Packet{
			tcp(at(0), "81.2.0.10:40000", "10.1.0.19:19", capture.TCPSyn, nil),
			tcp(at(time.Millisecond), "10.1.0.19:19", "81.2.0.10:40000", capture.TCPRst|capture.TCPAck, nil),
		}, nil},
		{"udp reply without request", []*capture.Packet{
			udp(at(0), "10.1.0.7:7", "81.2.0.10:40000", []byte("x")),
		}, nil},
		{"forged syn-ack", []*capture.Packet{
			tcp(at(0), "10.1.0.7:7", "81.2.0.10:40000", capture.TCPSyn|capture.TCPAck, nil),
		}, nil},
		{"allowed", []*capture.Packet{
			udp(at(0), "81.2.0.99:40000", "10.1.0.7:7", []byte("x")),
			udp(at(time.Millisecond), "10.1.0.7:7", "81.2.0.99:40000", []byte("x")),
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := homeConfig()
			cfg.Exposed.Allow = []string{"81.2.0.99"}
			h := newHarness(t, cfg)
			h.feed(tt.pkts...)
			h.flush()
			h.expect(tt.want...)
		})
	}
}

// TestExposedRearm: the exposure is open for its rearm time, a day,
// counting what the service takes and answers; it ends when the day has
// passed in packet time, and the next answer is a new exposure.
func TestExposedRearm(t *testing.T) {
	h := newHarness(t, homeConfig())
	for _, d := range []time.Duration{0, time.Hour, 23 * time.Hour, 25 * time.Hour} {
		h.feed(udp(at(d), "81.2.0.10:40000", "10.1.0.7:7", []byte("x")),
			udp(at(d+time.Millisecond), "10.1.0.7:7", "81.2.0.10:40000", []byte("x")))
	}
	h.expect("exposed/start/9000008 UDP/10.1.0.7:7", "exposed/end/9000008 UDP/10.1.0.7:7",
		"exposed/start/9000008 UDP/10.1.0.7:7")
	end := h.out.alerts[1]
	if in := end.Incident; !end.Time.Equal(at(25*time.Hour)) || in.Requests != 3 || in.Replies != 3 ||
		!in.LastSeen.Equal(at(23*time.Hour+time.Millisecond)) {
		t.Errorf("end at %v: %+v", end.Time, in)
	}
	if h.out.alerts[2].Incident.ID == end.Incident.ID {
		t.Error("the new exposure has the old one's id")
	}
	h.flush()
	h.expect("exposed/start/9000008 UDP/10.1.0.7:7", "exposed/end/9000008 UDP/10.1.0.7:7",
		"exposed/start/9000008 UDP/10.1.0.7:7", "exposed/end/9000008 UDP/10.1.0.7:7")
}

// TestExposedEndsOnTick: a live sensor's quiet time ends an exposure at
// its rearm time too.
func TestExposedEndsOnTick(t *testing.T) {
	cfg := homeConfig()
	cfg.Exposed.Rearm = time.Minute
	h := newHarness(t, cfg)
	h.feed(tcp(at(0), "81.2.0.10:40000", "10.1.0.19:19", capture.TCPSyn, nil),
		tcp(at(time.Millisecond), "10.1.0.19:19", "81.2.0.10:40000", capture.TCPSyn|capture.TCPAck, nil),
		tcp(at(2*time.Millisecond), "81.2.0.10:40000", "10.1.0.19:19", capture.TCPAck, nil),
		tcp(at(3*time.Millisecond), "10.1.0.19:19", "81.2.0.10:40000", capture.TCPAck|capture.TCPPsh, make([]byte, 74)),
		tcp(at(4*time.Millisecond), "81.2.0.10:40000", "10.1.0.19:19", capture.TCPAck|capture.TCPRst, nil))
	h.eng.Tick(at(59 * time.Second))
	h.expect("exposed/start/9000009 TCP/10.1.0.19:19")
	h.eng.Tick(at(61 * time.Second))
	h.expect("exposed/start/9000009 TCP/10.1.0.19:19", "exposed/end/9000009 TCP/10.1.0.19:19")
	// SYN and SYN-ACK, then the data: a bare ACK or a reset is neither a
	// request nor a reply.
	end := h.out.alerts[1]
	if in := end.Incident; !end.Time.Equal(at(61*time.Second)) || in.Requests != 1 || in.Replies != 2 ||
		in.Packets != 3 || !in.LastSeen.Equal(at(3*time.Millisecond)) {
		t.Errorf("end at %v: %+v", end.Time, in)
	}
}
