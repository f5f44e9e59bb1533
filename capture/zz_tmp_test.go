package capture_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

func TestTmpSlow(t *testing.T) {
	files, _ := filepath.Glob("/root/.cache/go-build/fuzz/github.com/echowatch/echowatch/capture/FuzzFileReader/*")
	for _, p := range files {
		raw, _ := os.ReadFile(p)
		line := strings.Split(string(raw), "\n")[1]
		s, _ := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"))
		data := []byte(s)
		start := time.Now()
		src, _ := capture.OpenFiles([]string{"-"}, bytes.NewReader(data))
		var f capture.Frame
		n := 0
		var last error
		for {
			err := src.ReadFrame(&f)
			if err == io.EOF { break }
			if err != nil { last = err; continue }
			n++
		}
		if d := time.Since(start); d > 20*time.Millisecond {
			t.Logf("%s: %v len=%d frames=%d err=%v", filepath.Base(p), d, len(data), n, last)
		}
	}
}
