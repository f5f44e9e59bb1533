//go:build !unix

package sinks

// noFollow is not available here: files are opened through links.
const noFollow = 0
