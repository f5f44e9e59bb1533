package detect

import (
	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
)

// EvidenceWriter keeps the first packets of each incident in a capture file
// of its own, for an analyst to open in Wireshark (--evidence-dir). The
// Engine calls it on its goroutine only.
type EvidenceWriter interface {
	// Create starts the evidence of incident id, whose packets have link
	// type link. It returns nil when it keeps no more evidence for now
	// (its bounds are reached, or the file could not be made: the writer
	// reports and counts that itself).
	Create(id string, link layers.LinkType) EvidenceFile
}

// EvidenceFile is the evidence of one incident.
type EvidenceFile interface {
	// Name is what the incident's alerts name: the file's path, also
	// once it is closed; "" once the writer no longer keeps the file (it
	// ended with no packet, as on a full disk, or was removed to stay
	// within the writer's bounds), so that no alert names a file that is
	// not there.
	Name() string
	// WritePacket appends p's frame (p.Raw). It returns false once the
	// file takes no more packets: its count is reached, its bytes would
	// exceed the writer's bound, or writing failed. The file is then
	// closed, and Close does nothing more.
	WritePacket(p *capture.Packet) bool
	// Close ends the file: the incident gives it no more packets.
	Close()
}
