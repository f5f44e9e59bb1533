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
	h.expect("exposed/start/9000008 UDP/10.1.0.7:7")
	a := h.out.alerts[0]
	if a.Src.String() != "10.1.0.7:7" || a.Dst.String() != "81.2.0.10:30000" || a.Incident.Service != "echo" ||
		a.Incident.Direction != "inbound" || a.CommunityID == "" || a.Incident.Packets != 2 {
		t.Errorf("alert %+v", a)
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
		}, []string{"exposed/start/9000009 TCP/10.1.0.19:19"}},
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

func TestExposedRearm(t *testing.T) {
	h := newHarness(t, homeConfig())
	for _, d := range []time.Duration{0, time.Hour, 23 * time.Hour, 25 * time.Hour} {
		h.feed(udp(at(d), "81.2.0.10:40000", "10.1.0.7:7", []byte("x")),
			udp(at(d+time.Millisecond), "10.1.0.7:7", "81.2.0.10:40000", []byte("x")))
	}
	h.expect("exposed/start/9000008 UDP/10.1.0.7:7", "exposed/start/9000008 UDP/10.1.0.7:7")
}
