package sinkstest

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
)

// FileLines returns the lines of the file at path as they are now (up to
// 1 MiB each): what a file output or a collector wrote so far. A file not
// written yet has no lines.
func FileLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}
