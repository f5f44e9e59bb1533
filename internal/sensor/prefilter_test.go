package sensor

import (
	"bytes"
	"path/filepath"
	"reflect"
	"testing"
)

// TestPrefilterChangesNothing runs every case with one worker and with
// three, with the decoder's pre-filter and without, and wants the same
// alerts and the same counters: decoded and dropped frames, tunnels,
// flows created and untracked, and detection's.
func TestPrefilterChangesNothing(t *testing.T) {
	var untracked uint64
	for _, dir := range goldenCases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			for _, workers := range goldenWorkers {
				var with, without Stats
				got := replay{dir: dir, workers: workers, stats: &with}.run(t)
				want := replay{dir: dir, workers: workers, stats: &without, fullDecode: true}.run(t)
				if !bytes.Equal(got, want) {
					t.Errorf("%d workers: alerts differ with the pre-filter\n%s", workers, lineDiff(string(want), string(got)))
				}
				if with.Decoder != without.Decoder || with.Flow != without.Flow || !with.Last.Equal(without.Last) {
					t.Errorf("%d workers: counters with the pre-filter\n %+v\n %+v\nwithout\n %+v\n %+v",
						workers, with.Decoder, with.Flow, without.Decoder, without.Flow)
				}
				if !reflect.DeepEqual(with.Detect, without.Detect) {
					t.Errorf("%d workers: detection's counters with the pre-filter\n %+v\nwithout\n %+v", workers, with.Detect, without.Detect)
				}
				untracked += with.Flow.Untracked
			}
		})
	}
	if untracked == 0 {
		t.Fatal("no packet untracked in any case: the pre-filter was not tried")
	}
}
