package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// event is one sample input: a product review.
type event struct {
	Key   string
	Value []byte
}

var (
	products = []string{"Aurora headphones", "Pico kettle", "Nimbus backpack", "Atlas desk lamp", "Orbit phone case"}
	openings = []string{
		"I love these, great sound and excellent battery.",
		"Terrible build, it broke after a week and support was useless.",
		"It works. Delivery took five days.",
		"Great value, but the manual is awful.",
		"Amazing quality, I would recommend it to anyone.",
		"Disappointing: the colour is wrong and it feels cheap.",
		"Bought it in Paris for my trip to Berlin, fine so far.",
	}
	// malformed are inputs the pipeline cannot enrich, one of each kind:
	// not JSON, cut-off JSON, not an object, and objects whose text field
	// is missing, not a string or empty.
	malformed = []string{
		`this is not JSON`,
		`{"event_id":"%s","review":{"body":"Great kettle, really gr`,
		`["%s","an array, not an object"]`,
		`{"event_id":"%s","review":{"title":"no body"}}`,
		`{"event_id":"%s","review":{"body":42}}`,
		`{"event_id":"%s","review":{"body":""}}`,
	}
)

// sampleEvents returns n reviews, every malformedEvery-th of them malformed
// (none when malformedEvery is 0). The same n gives the same events.
func sampleEvents(n, malformedEvery int) (events []event, bad int) {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprintf("evt-%04d", i+1)
		user := fmt.Sprintf("user-%02d", rng.IntN(50))
		if malformedEvery > 0 && (i+1)%malformedEvery == 0 {
			tmpl := malformed[bad%len(malformed)]
			v := tmpl
			if bad%len(malformed) != 0 {
				v = fmt.Sprintf(tmpl, id)
			}
			events = append(events, event{Key: user, Value: []byte(v)})
			bad++
			continue
		}
		doc := map[string]any{
			"event_id": id,
			"user":     user,
			"ts":       start.Add(time.Duration(i) * time.Second).Format(time.RFC3339),
			"review": map[string]any{
				"product": products[rng.IntN(len(products))],
				"stars":   1 + rng.IntN(5),
				"body":    openings[rng.IntN(len(openings))],
			},
		}
		b, err := json.Marshal(doc)
		if err != nil {
			panic(err) // maps of strings and ints always marshal
		}
		events = append(events, event{Key: user, Value: b})
	}
	return events, bad
}
