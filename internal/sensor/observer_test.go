package sensor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

// observation is what an Observer is told, in order: "alert ID PHASE" and
// "rate ID TIME PPS".
type observation []string

func (o *observation) WriteAlert(a *detect.Alert) {
	*o = append(*o, fmt.Sprintf("alert %s %s", a.Incident.ID, a.Incident.Phase))
}

func (o *observation) IncidentRate(id string, _ detect.Kind, at time.Time, pps, _ float64) {
	*o = append(*o, fmt.Sprintf("rate %s %s %.1f", id, at.Format(time.RFC3339), pps))
}

// TestObserver: the Observer in Config is given every alert the outputs
// get, through Alerts, and the open incidents' rates, which New wires; the
// same with one worker and three.
func TestObserver(t *testing.T) {
	var runs []observation
	for _, workers := range []int{1, 3} {
		src, err := capture.OpenFiles([]string{"../../pcaps/demo.pcap"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		var seen observation
		out := &countAlerts{}
		cfg := Config{Workers: workers, Observer: &seen}
		eng, err := detect.New(detect.DefaultConfig(), out)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, []capture.Source{src}, eng)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		alerts, rates := 0, 0
		for _, o := range seen {
			if strings.HasPrefix(o, "alert ") {
				alerts++
			} else {
				rates++
			}
		}
		if alerts == 0 || alerts != out.n {
			t.Errorf("%d workers: the observer saw %d alerts, the outputs %d: want the same, and some", workers, alerts, out.n)
		}
		if rates == 0 {
			t.Errorf("%d workers: the observer saw no incident's rate", workers)
		}
		runs = append(runs, seen)
	}
	if !slices.Equal(runs[0], runs[1]) {
		t.Errorf("3 workers told the observer\n%v\none told it\n%v", runs[1], runs[0])
	}

}
