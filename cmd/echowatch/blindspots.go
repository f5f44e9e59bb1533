package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// tunnelCount is one counter of capture.TunnelStats, as the stats event
// (echowatch.decoder.tunnels.<kind>.<result>) and the metrics
// (echowatch_tunnel_frames_total{kind,result}) name it.
type tunnelCount struct {
	result string
	n      uint64
}

// tunnelCounts returns the counters that kind k has: every kind decoded,
// malformed and unknown_payload; the UDP encapsulations not_tunnel
// (datagrams to their port that were not such a header, delivered as
// UDP); VXLAN other_port (VXLAN to UDP 8472 while it is not a VXLAN port).
func tunnelCounts(k capture.TunnelKind, s capture.TunnelStats) []tunnelCount {
	c := []tunnelCount{{"decoded", s.Decoded}, {"malformed", s.Malformed}, {"unknown_payload", s.UnknownPayload}}
	switch k {
	case capture.TunnelVXLAN:
		c = append(c, tunnelCount{"not_tunnel", s.NotTunnel}, tunnelCount{"other_port", s.OtherPort})
	case capture.TunnelVXLANGPE, capture.TunnelGeneve, capture.TunnelGTPU:
		c = append(c, tunnelCount{"not_tunnel", s.NotTunnel})
	}
	return c
}

// linuxVXLANPort is the port whose VXLAN the decoder counts as other_port
// while it is not one of --vxlan-port (Linux's default, flannel's).
const linuxVXLANPort = 8472

// blindSpots warns on standard error, once per kind a run, when the
// counters first show frames that echowatch saw and could not look into,
// and says what would help: a sensor fed by a mirror it does not
// understand must not look healthy. It reads the counters of a stats
// snapshot, never a packet; its checks run on one goroutine at a time.
type blindSpots struct {
	w    io.Writer
	said map[string]bool
}

func newBlindSpots(w io.Writer) *blindSpots {
	return &blindSpots{w: w, said: map[string]bool{}}
}

// check warns of the blind spots in d not warned of before.
func (b *blindSpots) check(d decoderStats) {
	// warn says, once per key, what n frames were: one, or many.
	warn := func(key string, n uint64, one, many string) {
		if n == 0 || b.said[key] {
			return
		}
		b.said[key] = true
		what := many
		if n == 1 {
			what = one
		}
		fmt.Fprintf(b.w, "echowatch: warning: %s %s (stats: echowatch.decoder.%s)\n", groupDigits(n), what, key)
	}
	for _, k := range capture.TunnelKinds() {
		t := d.Tunnels[k.String()]
		if k == capture.TunnelVXLAN {
			add := fmt.Sprintf(": add --vxlan-port %d", linuxVXLANPort)
			warn("tunnels.vxlan.other_port", t["other_port"],
				fmt.Sprintf("frame to UDP port %d looks like VXLAN and was not decoded", linuxVXLANPort)+add,
				fmt.Sprintf("frames to UDP port %d look like VXLAN and were not decoded", linuxVXLANPort)+add)
		}
		warn("tunnels."+k.String()+".malformed", t["malformed"],
			fmt.Sprintf("frame has a %s header that does not parse, and was not looked into", k),
			fmt.Sprintf("frames have a %s header that does not parse, and were not looked into", k))
		warn("tunnels."+k.String()+".unknown_payload", t["unknown_payload"],
			fmt.Sprintf("%s frame carries a protocol echowatch does not decode, and was not looked into", k),
			fmt.Sprintf("%s frames carry a protocol echowatch does not decode, and were not looked into", k))
	}
	r := capture.DropTunnelTooDeep.String()
	warn("dropped."+r, d.Dropped[r],
		"frame nests more encapsulations than echowatch follows, and was not looked into",
		"frames nest more encapsulations than echowatch follows, and were not looked into")
	r = capture.DropTunnelFragment.String()
	mtu := ": raise the MTU between the mirror and the sensor"
	warn("dropped."+r, d.Dropped[r],
		"later fragment of a tunnel packet was not looked into, and the packet it carried was seen cut short"+mtu,
		"later fragments of tunnel packets were not looked into, and the packets they carried were seen cut short"+mtu)
}

// checkClock warns, once each a run, that the capture's clock stepped back
// or that packets carried an impossible time, naming the first frame's
// time and detection's clock then: the alerts are right (detection's clock
// never runs back), but the capture, or the host's clock, is not.
func (b *blindSpots) checkClock(d detect.Stats) {
	if d.TimeStepsBack > 0 && !b.said["time_steps_back"] {
		b.said["time_steps_back"] = true
		e := d.FirstStepBack
		fmt.Fprintf(b.w, "echowatch: warning: a frame stamped %s came %v behind detection's clock (%s): "+
			"the capture's clock stepped back, or frames came late; counted at the clock's time (stats: echowatch.detect.time_steps_back)\n",
			clockTime(e.Frame), e.Clock.Sub(e.Frame).Round(time.Millisecond), clockTime(e.Clock))
	}
	if d.TimeInvalid > 0 && !b.said["time_invalid"] {
		b.said["time_invalid"] = true
		e := d.FirstInvalid
		what := "a packet has an impossible time"
		if d.TimeInvalid > 1 {
			what = groupDigits(d.TimeInvalid) + " packets have impossible times"
		}
		first := "counted at detection's clock, " + clockTime(e.Clock)
		if e.Clock.IsZero() {
			first = "came before any valid time and was not looked at"
		}
		fmt.Fprintf(b.w, "echowatch: warning: %s (before 1995, or more than a day past detection's clock): "+
			"the first, stamped %s, %s; after a valid time they count at the clock's (stats: echowatch.detect.time_invalid)\n",
			what, clockTime(e.Frame), first)
	}
}

// clockTime writes t as the warnings name times, in UTC.
func clockTime(t time.Time) string { return t.UTC().Format(eveTimeLayout) }

// groupDigits writes n with a comma between groups of three digits.
func groupDigits(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
