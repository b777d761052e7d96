package openai

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testutil"
)

// BenchmarkRealModel runs b.N sentiment events through a pipeline against
// the real model server (SLUICE_MODEL_URL, see scripts/model.sh) with 1, 2
// and 4 calls in flight, and reports events/s and the p50 and p99 latency
// of one event's model call: the figure to size concurrency by. It skips
// without a server. Use a fixed count; a small model on a CPU takes
// tenths of a second to seconds per event:
//
//	eval "$(scripts/model.sh start)"
//	go test -run '^$' -bench RealModel -benchtime 40x ./openai
func BenchmarkRealModel(b *testing.B) {
	url, model := realModel(b)
	for _, conc := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			e, err := New(model, Sentiment(), []string{"text"}, WithBaseURL(url), WithTemperature(0),
				WithTimeout(5*time.Minute), WithLogger(testutil.Quiet()))
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.ResetTimer()
			res := runPipeline(b, e, b.N, conc, 1)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/res.elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(res.stats.LatencyP50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(res.stats.LatencyP99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(res.dead)/float64(b.N), "dead-share")
		})
	}
}
