// Package sinks delivers alerts and stats events to where analysts read
// them: stdout, files, syslog and Kafka. It is the last stage of the
// pipeline: capture → detect → sinks.
package sinks

// Event is one record for the outputs: an alert or a stats event.
type Event interface {
	// AppendEVE appends the event as one EVE JSON object, without a newline.
	AppendEVE(b []byte) []byte
	// AppendText appends the event as one readable line, without a newline.
	AppendText(b []byte) []byte
}

// Sink is one output. Write is called by one goroutine at a time and must
// not keep ev after it returns. Close flushes what is buffered, and is safe
// to call twice; Write is not called after Close.
type Sink interface {
	Write(ev Event) error
	Close() error
}
