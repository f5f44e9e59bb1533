package main

import (
	"time"
)

// clockScenarios are the cases whose capture's clock misbehaves: records
// stamped an hour back from the middle on, stamped zero, stamped a year
// ahead. Detection's clock must give the rates the packets justify.
func clockScenarios() []scenario {
	return []scenario{
		{
			name: "clock-step-back",
			about: `Echo reflection across a step of the capture's clock: 40 echo servers answer
spoofed requests toward 198.51.100.44, 150 packets/s from 2 s to 42 s (6000
replies), with DNS lookups until 120 s; from 22 s on every record is stamped one
hour earlier (an NTP step), so the file's times run 12:00:00 to 12:00:22, then
11:00:22 on. Expect one reflection incident at about 150 pps (start, update,
end), its times never going back, and one step back in the stats
(detect.time_steps_back).`,
			build: clockStepBack,
		},
		{
			name: "clock-step-back-monitor",
			about: `A harmless monitor across a step of the capture's clock: 60 echo servers answer
the probes of 198.51.100.60, each once every 12 s, 5 replies/s in all for 120 s;
the probes leave by another link, so the capture holds only the replies. From
60 s on every record is stamped one hour earlier. Expect no alert (5 pps is far
below reflection's threshold) and one step back in the stats.`,
			build: clockStepBackMonitor,
		},
		{
			name: "clock-zero-timestamps",
			about: `Records stamped zero (1970-01-01T00:00:00Z), first and in the middle: echo
replies toward 198.51.100.41 at 42 packets/s from 2 s to 42 s from 10 servers,
below reflection's threshold of 50, and an echo reflection toward 198.51.100.42
at 150 packets/s from 2 s to 22 s from 40 servers. The first three records of
the file are replies to 198.51.100.41 stamped zero; at 12 s, two more replies
to each victim are stamped zero. Expect one reflection incident, for
198.51.100.42 at about 150 pps, nothing for 198.51.100.41, no alert stamped
1970, and seven packets of impossible time in the stats (detect.time_invalid).`,
			build: clockZeroTimestamps,
		},
		{
			name: "clock-far-future",
			about: `One record a year ahead: an echo reflection toward 198.51.100.43 at 150 packets/s
from 2 s to 22 s from 40 servers, one of whose replies, at 12 s, is stamped 365
days later. Expect one reflection incident at about 150 pps whose times stay in
2024 (start, update, end), and one packet of impossible time in the stats
(detect.time_invalid).`,
			build: clockFarFuture,
		},
	}
}

// stepBack stamps the records from at on one hour earlier.
func stepBack(t *trace, at time.Duration) {
	t.stamp = func(d time.Duration) time.Time {
		if d >= at {
			d -= time.Hour
		}
		return epoch.Add(d)
	}
}

// restamp stamps the records at the times of odd (exact times the case
// added them at) with the time odd gives, and the others with their own.
func restamp(t *trace, odd map[time.Duration]time.Time) {
	t.stamp = func(d time.Duration) time.Time {
		if ts, ok := odd[d]; ok {
			return ts
		}
		return epoch.Add(d)
	}
}

func clockStepBack(t *trace) {
	const to = attackFrom + 40*time.Second
	echoReflection(t, reflectors(t, 40, false), v4(198, 51, 100, 44), 150*40, attackFrom, to)
	lookups(t, localClient, localResolver, 0, 0, to+78*time.Second)
	stepBack(t, attackFrom+20*time.Second)
}

func clockStepBackMonitor(t *trace) {
	const n, seconds = 60, 120
	monitor := v4(198, 51, 100, 60)
	servers := reflectors(t, n, false)
	payload := []byte("monitor probe\n")
	// Round robin: one reply every 200 ms, each server every 12 s.
	for i, at := range spread(t.rng, 0, seconds*time.Second, 5*seconds) {
		s := servers[i%n]
		t.udp(at, pkt{src: ap(s.addr, 7), dst: ap(monitor, ephemeral(t.rng)), ttl: s.ttl, id: s.nextID(), payload: payload})
	}
	lookups(t, localClient, localResolver, 0, 0, seconds*time.Second)
	stepBack(t, seconds/2*time.Second)
}

func clockZeroTimestamps(t *trace) {
	quiet, loud := v4(198, 51, 100, 41), v4(198, 51, 100, 42)
	quietRefl, loudRefl := reflectors(t, 10, false), reflectors(t, 40, false)
	echoReflection(t, quietRefl, quiet, 42*40, attackFrom, attackFrom+40*time.Second)
	echoReflection(t, loudRefl, loud, 150*attackSeconds, attackFrom, attackTo)
	lookups(t, localClient, localResolver, 0, 0, tailTo+20*time.Second)
	zero := time.Unix(0, 0).UTC()
	odd := map[time.Duration]time.Time{}
	reply := func(at time.Duration, r *host, victim [4]byte) {
		t.udp(at, pkt{src: ap(r.addr, 7), dst: ap(v4(victim[0], victim[1], victim[2], victim[3]), ephemeral(t.rng)),
			ttl: r.ttl, id: r.nextID(), payload: []byte("zero-stamped echo reply, 32 B!\n")})
		odd[at] = zero
	}
	for i := range 3 { // the first records of the file
		reply(time.Duration(i)*time.Microsecond, quietRefl[i], quiet.As4())
	}
	mid := 12*time.Second + 500*time.Microsecond
	for i := range 2 {
		reply(mid+time.Duration(i)*time.Microsecond, quietRefl[i], quiet.As4())
		reply(mid+time.Duration(2+i)*time.Microsecond, loudRefl[i], loud.As4())
	}
	restamp(t, odd)
}

func clockFarFuture(t *trace) {
	victim := v4(198, 51, 100, 43)
	refl := reflectors(t, 40, false)
	echoReflection(t, refl, victim, 150*attackSeconds, attackFrom, attackTo)
	lookups(t, localClient, localResolver, 0, 0, tailTo)
	at := 12*time.Second + 500*time.Microsecond
	t.udp(at, pkt{src: ap(refl[0].addr, 7), dst: ap(victim, ephemeral(t.rng)), ttl: refl[0].ttl, id: refl[0].nextID(),
		payload: []byte("a reply stamped a year ahead...\n")})
	restamp(t, map[time.Duration]time.Time{at: epoch.Add(at + 365*24*time.Hour)})
}
