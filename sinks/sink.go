// Package sinks delivers alerts and stats events to where analysts read
// them: stdout, files, syslog and Kafka. It is the last stage of the
// pipeline: capture → detect → sinks.
//
// Each output is a Queue in front of a Dialer: the Queue takes events
// without ever blocking the caller, holds them in a bounded buffer, and
// one goroutine per output connects, sends, reconnects with backoff after
// a failure and sends again what the failed connection had not delivered.
// A Dialer knows one kind of destination: Writer (standard output), File,
// Syslog and Kafka.
//
// ParseOutput makes an output's destination from its URL and options;
// each kind parses its own beside it (file.go, syslog_url.go,
// kafka_url.go). A Fanout hands every event to a set of outputs, and
// swaps the set when the configuration is reloaded.
package sinks

import (
	"context"
	"errors"
	"time"
)

// Event is one record for the outputs: an alert or a stats event.
type Event interface {
	// AppendEVE appends the event as one EVE JSON object, without a newline.
	AppendEVE(b []byte) []byte
	// AppendText appends the event as one readable line, without a newline.
	AppendText(b []byte) []byte
	// EventMeta returns what the EVE object says in its "event_type" and
	// "timestamp" ("alert" and the packet time for an alert), for outputs
	// that put them in their own headers.
	EventMeta() (eventType string, t time.Time)
}

// Dialer connects to one destination. A Queue calls Dial from its own
// goroutine, at the first event and again after every failure, with
// backoff; ctx ends when the Queue gives up at close.
type Dialer interface {
	Dial(ctx context.Context) (Conn, error)
}

// Conn is one connection to a destination. Only the goroutine of the Queue
// that dialled it uses it.
type Conn interface {
	// Send writes recs, in order. It reports how many of the records given
	// to this connection so far are now settled (delivered, or refused for
	// good), oldest first; fewer than were sent when the destination
	// confirms later (see Settler). An error means the connection is
	// broken and will be closed. Send returns early when ctx is done.
	Send(ctx context.Context, recs []*Record) (Progress, error)
	// Close ends the connection and returns, in order, the records it was
	// given and has not settled, so the next connection sends them again.
	Close() (unsent []*Record)
}

// Progress is what a Conn learnt about the records it was given.
type Progress struct {
	Delivered int // known to have reached the destination
	Rejected  int // refused for good (too large): never sent again
}

// Settler is a Conn that learns of deliveries after Send returns: a TCP
// connection knows its bytes arrived when the peer acknowledges them.
type Settler interface {
	// Settle reports the records settled since the last report, and an
	// error if the connection broke in the meantime. A Settler may hold a
	// confirmed record a while longer, to see the connection stay up;
	// hurry says the Queue is short of room: what the destination
	// confirmed counts at once.
	Settle(hurry bool) (Progress, error)
	// Drain ends sending and waits, until ctx is done, for the destination
	// to confirm everything sent.
	Drain(ctx context.Context) (Progress, error)
}

// Checker is a Dialer that can tell at start-up that its configuration is
// wrong (a Kafka topic that does not exist, a file that cannot be opened).
// An error wrapping ErrUnavailable means only that the destination could
// not be reached: the Queue starts anyway and connects when it can.
type Checker interface {
	Check(ctx context.Context) error
}

var (
	// ErrQueueFull is returned by Write when an output's queue is full and
	// the event was dropped (and counted).
	ErrQueueFull = errors.New("queue full")
	// ErrClosed is returned by Write after Close.
	ErrClosed = errors.New("output closed")
	// ErrUnavailable wraps a Checker's error when the destination could
	// not be reached.
	ErrUnavailable = errors.New("destination unavailable")
)
