package sinks

import (
	"bytes"
	"sync"
	"time"

	"github.com/echowatch/echowatch/detect"
)

// Record is an event rendered once for every output: its EVE JSON and, for
// an alert, a private copy that outputs read fields from (syslog's MSGID,
// Kafka's key). Detection reuses its Alert, so a Record copies everything
// it keeps. It is not changed after NewRecord: any number of outputs share
// it.
type Record struct {
	EVE  []byte    // the EVE JSON object, without a newline
	Type string    // EVE's event_type: "alert", "stats"
	Time time.Time // the event's time (packet time for an alert)

	alert *detect.Alert // nil for other events
	text  []byte        // other events' text, rendered at creation
}

// scratch holds the buffers events are rendered into before a Record
// takes a copy of the right size.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// NewRecord renders ev. It keeps nothing of ev.
func NewRecord(ev Event) *Record {
	typ, t := ev.EventMeta()
	if a, ok := ev.(*detect.Alert); ok {
		buf := scratch.Get().(*[]byte)
		*buf = a.AppendEVE((*buf)[:0])
		r := &Record{EVE: bytes.Clone(*buf), Type: typ, Time: t, alert: a.Clone()}
		scratch.Put(buf)
		return r
	}
	return &Record{EVE: ev.AppendEVE(nil), Type: typ, Time: t, text: ev.AppendText(nil)}
}

// Alert returns the alert the record was made from, or nil for another
// kind of event. The caller must not change it.
func (r *Record) Alert() *detect.Alert { return r.alert }

// AppendText appends the event as one readable line.
func (r *Record) AppendText(b []byte) []byte {
	if r.alert != nil {
		return r.alert.AppendText(b)
	}
	return append(b, r.text...)
}
