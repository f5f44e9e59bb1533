//go:build !linux

package live

import (
	"errors"
	"io"

	"github.com/echowatch/echowatch/capture"
)

// AFPacket is an AF_PACKET capture socket, which only Linux has.
type AFPacket struct{}

var (
	_ capture.Source      = (*AFPacket)(nil)
	_ capture.StatsSource = (*AFPacket)(nil)
)

// OpenAFPacket fails: AF_PACKET is Linux only. Use OpenPcap.
func OpenAFPacket(cfg Config, workers int) ([]*AFPacket, error) {
	return nil, errors.New("capture/live: afpacket capture needs Linux; use pcap")
}

// ReadFrame returns io.EOF.
func (*AFPacket) ReadFrame(*capture.Frame) error { return io.EOF }

// Close does nothing.
func (*AFPacket) Close() error { return nil }

// Stats returns no counters.
func (*AFPacket) Stats() (capture.SourceStats, error) { return capture.SourceStats{}, nil }
