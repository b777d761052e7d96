package llmtest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluicehq/sluice/llmtest"
)

// A fake model that allows 2 requests a second: the third request in a burst
// is refused with 429 and a Retry-After, as a real rate-limited API would.
func Example() {
	srv := llmtest.NewServer(llmtest.WithRPS(2, 2), llmtest.WithLatency(llmtest.Fixed(time.Millisecond)))
	defer srv.Close()

	body := `{"model":"m","messages":[{"role":"system","content":"Task: sentiment"},{"role":"user","content":"I love it"}]}`
	for range 3 {
		resp, err := http.Post(srv.BaseURL()+"/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Retry-After") != "")
	}
	fmt.Println("calls seen:", srv.Stats().Total)
	// Output:
	// 200 false
	// 200 false
	// 429 true
	// calls seen: 3
}

// The deterministic answers behind the fake, usable in assertions.
func ExampleSentiment() {
	label, score := llmtest.Sentiment("Great phone, I love it")
	fmt.Println(label, score)
	// Output: positive 1
}
