// Command custom-enricher shows that a hand-written sluice.Enricher is all a
// pipeline needs: no model, no API. Its enricher tags support tickets with
// topics from keyword lists and stores the tags under "tags", leaving every
// other byte of the event as it was. Tickets that are not JSON are
// dead-lettered by marking their error sluice.Permanent.
//
// It runs on sluicetest's in-memory source and sink, so it needs nothing:
//
//	go run ./examples/custom-enricher
//
// In a real service, swap the in-memory parts for kafka.NewSource and
// kafka.NewSink (or the redisstream ones): the enricher does not change.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
	"github.com/sluicehq/sluice/sluicetest"
)

// Tagger is a sluice.Enricher that tags an event's text field with every
// topic one of whose keywords it contains.
type Tagger struct {
	Field  string              // dot path of the text, e.g. "ticket.body"
	Topics map[string][]string // topic -> lower-case keywords
}

// Enrich implements sluice.Enricher. It treats in as read-only and returns a
// new message, as the interface requires.
func (t *Tagger) Enrich(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
	// jsonenrich.Extract fails with a sluice.Permanent error for input that is not
	// a JSON object or lacks the field: the pipeline dead-letters it at once.
	fields, err := jsonenrich.Extract(in.Value, []string{t.Field})
	if err != nil {
		return nil, err
	}
	text := strings.ToLower(fields[0].Text)
	tags := []string{}
	for topic, words := range t.Topics {
		if slices.ContainsFunc(words, func(w string) bool { return strings.Contains(text, w) }) {
			tags = append(tags, topic)
		}
	}
	slices.Sort(tags)
	answer, err := json.Marshal(tags)
	if err != nil {
		return nil, sluice.Permanent(err)
	}
	// jsonenrich.Merge adds "tags" and keeps the rest of the event byte for byte.
	out, err := jsonenrich.Merge(in.Value, "tags", answer)
	if err != nil {
		return nil, err
	}
	return in.WithValue(out), nil
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custom-enricher:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	tickets := []string{
		`{"id":1,"ticket":{"body":"I was charged twice, please refund my invoice"}}`,
		`{"id":2,"ticket":{"body":"The app crashes when I upload a photo"}}`,
		`{"id":3,"ticket":{"body":"How do I reset my password? Login fails."}}`,
		`{"id":4,"ticket":{"body":"Thanks, all good now!"}}`,
		`{"id":5,"ticket":{"body":"Refund please: the app crashes on login"}}`,
		`not a ticket at all`,
	}
	src := sluicetest.NewSource("tickets", 2)
	for i, t := range tickets {
		src.Publish([]byte(fmt.Sprint(i%2)), []byte(t))
	}
	src.End() // Fetch reports sluice.ErrSourceClosed once everything is read
	sink := sluicetest.NewSink()

	tagger := &Tagger{Field: "ticket.body", Topics: map[string][]string{
		"billing": {"charged", "refund", "invoice"},
		"bug":     {"crash", "error", "fails"},
		"account": {"password", "login"},
	}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := sluice.New(src, tagger, sink, sluice.WithConcurrency(4), sluice.WithLogger(quiet))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil { // returns once the source has ended and everything is written
		return err
	}

	out := sink.Messages()
	slices.SortFunc(out, func(a, b *sluice.Message) int { return strings.Compare(string(a.Value), string(b.Value)) })
	fmt.Fprintln(w, "enriched:")
	for _, m := range out {
		fmt.Fprintln(w, " ", string(m.Value))
	}
	fmt.Fprintln(w, "dead letters:")
	for _, d := range sink.DeadLetters() {
		fmt.Fprintf(w, "  %s (%s)\n", d.Msg.Value, d.Reason)
	}
	st := p.Stats()
	if st.Enriched != 5 || st.DeadLettered != 1 {
		return fmt.Errorf("want 5 enriched and 1 dead letter, got %d and %d", st.Enriched, st.DeadLettered)
	}
	return nil
}
