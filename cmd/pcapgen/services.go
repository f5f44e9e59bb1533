package main

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// serviceScenarios are the reflection cases of the small services other
// than echo and chargen: each answers any datagram, forged or not, with
// one of its own.
func serviceScenarios() []scenario {
	return []scenario{
		{
			name:    "qotd-reflection",
			homeNet: []string{"198.51.100.0/24"},
			snaplen: 96,
			about: `QOTD reflection toward us (RFC 865): 30 quote-of-the-day servers answer
one-byte spoofed requests with their quote (85 to 467 bytes), UDP from port 17 to
random ports of 198.51.100.17: 300 packets/s from 2 s to 22 s (6000 replies).
Expect one inbound reflection incident for 198.51.100.17, service qotd, 30
reflectors, at 300 pps: start, an update 60 s later, end about 60 s after the
attack stops. Taken with a 96-byte snap length, like chargen-reflection.`,
			build: qotdReflection,
		},
		{
			name:    "daytime-reflection",
			homeNet: []string{"198.51.100.0/24"},
			about: `Daytime reflection toward us (RFC 867): 20 daytime servers answer spoofed
requests with the date as inetd writes it ("Tue Mar 19 12:00:05 2024" and CR
LF, 26 bytes), UDP from port 13 to random ports of 198.51.100.13: 120 packets/s
from 2 s to 22 s (2400 replies). Expect one inbound reflection incident for
198.51.100.13, service daytime, 20 reflectors, at 120 pps: start, update, end.`,
			build: daytimeReflection,
		},
		{
			name:    "time-reflection",
			homeNet: []string{"198.51.100.0/24"},
			about: `Time reflection toward us (RFC 868): 15 time servers answer spoofed requests
with the time as 4 bytes, seconds since 1900, UDP from port 37 to random ports
of 198.51.100.37: 90 packets/s from 2 s to 22 s (1800 replies), far below the
bit-rate threshold. Expect one inbound reflection incident for 198.51.100.37,
service time, 15 reflectors, at 90 pps: start, update, end.`,
			build: timeReflection,
		},
	}
}

// serviceReflection adds replies from port of n reflectors toward victim's
// random ports, total of them from attackFrom to attackTo, each reflector
// sending a different number; answer gives reflector i's reply at a time.
// Then the lookups go on until tailTo.
func serviceReflection(t *trace, n int, port uint16, victim netip.Addr, total int, answer func(i int, at time.Duration) []byte) {
	refl := reflectors(t, n, false)
	for _, s := range schedule(t.rng, descending(total, n), attackFrom, attackTo) {
		r := refl[s.who]
		t.udp(s.at, pkt{src: ap(r.addr, port), dst: ap(victim, ephemeral(t.rng)), ttl: r.ttl, id: r.nextID(), payload: answer(s.who, s.at)})
	}
	lookups(t, localClient, localResolver, 0, 0, tailTo)
}

func qotdReflection(t *trace) {
	// Each server has its quote of the day, one of these.
	quotes := make([][]byte, 30)
	for i := range quotes {
		quotes[i] = []byte(qotdQuotes[t.rng.IntN(len(qotdQuotes))])
	}
	serviceReflection(t, len(quotes), 17, v4(198, 51, 100, 17), 300*attackSeconds,
		func(i int, _ time.Duration) []byte { return quotes[i] })
}

func daytimeReflection(t *trace) {
	serviceReflection(t, 20, 13, v4(198, 51, 100, 13), 120*attackSeconds, func(_ int, at time.Duration) []byte {
		return epoch.Add(at).AppendFormat(nil, "Mon Jan _2 15:04:05 2006\r\n")
	})
}

func timeReflection(t *trace) {
	serviceReflection(t, 15, 37, v4(198, 51, 100, 37), 90*attackSeconds, func(_ int, at time.Duration) []byte {
		return binary.BigEndian.AppendUint32(nil, uint32(epoch.Add(at).Unix()+secondsFrom1900To1970))
	})
}

// secondsFrom1900To1970 is what RFC 868 adds to Unix time.
const secondsFrom1900To1970 = 2208988800

// qotdQuotes are what the QOTD servers say, each at most 512 bytes as RFC
// 865 asks, the longest close to it.
var qotdQuotes = []string{
	"\"A journey of a thousand miles begins with a single step.\"\r\n  Lao Tzu, Tao Te Ching\r\n",
	"\"The only thing we have to fear is fear itself.\"\r\n  Franklin D. Roosevelt, first inaugural address, 1933\r\n",
	"\"It was the best of times, it was the worst of times, it was the age of wisdom,\r\n" +
		"it was the age of foolishness, it was the epoch of belief, it was the epoch of\r\n" +
		"incredulity, it was the season of Light, it was the season of Darkness, it was\r\n" +
		"the spring of hope, it was the winter of despair, we had everything before us,\r\n" +
		"we had nothing before us, we were all going direct to Heaven, we were all\r\n" +
		"going direct the other way.\"\r\n  Charles Dickens, A Tale of Two Cities\r\n",
	"\"Be conservative in what you do, be liberal in what you accept from others.\"\r\n" +
		"  Jon Postel, RFC 793\r\n",
	"\"Call me Ishmael. Some years ago - never mind how long precisely - having little\r\n" +
		"or no money in my purse, and nothing particular to interest me on shore, I\r\n" +
		"thought I would sail about a little and see the watery part of the world. It is\r\n" +
		"a way I have of driving off the spleen and regulating the circulation.\"\r\n" +
		"  Herman Melville, Moby-Dick\r\n",
	"\"We can only see a short distance ahead, but we can see plenty there that needs\r\n" +
		"to be done.\"\r\n  Alan Turing, Computing Machinery and Intelligence, 1950\r\n",
}
