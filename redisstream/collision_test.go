package redisstream

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

// A header named like the payload or key field (a Kafka record with a
// "payload" header, or a stream read with another payload field) would
// replace the event when written as a field: the sink refuses the message
// as permanent, naming the header, so that the pipeline dead-letters it.
func TestFieldsRefuseHeaderCollision(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      codec
		value  string
		header string
	}{
		{"payload field", codec{payload: "payload", key: "key"}, `{"x":1}`, "payload"},
		{"key field", codec{payload: "payload", key: "key"}, `{"x":1}`, "key"},
		{"member of a JSON value", codec{payload: "payload", asJSON: true}, `{"a":"1","b":2}`, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &sluice.Message{
				Value:   []byte(tc.value),
				Headers: []sluice.Header{{Key: "trace", Value: []byte("t")}, {Key: tc.header, Value: []byte("from the header")}},
				Origin:  sluice.Origin{Topic: "in", Partition: 1, Offset: 7},
			}
			args, err := tc.c.fields(m)
			if !errors.Is(err, ErrFieldCollision) || !errors.Is(err, sluice.ErrPermanent) || !strings.Contains(err.Error(), `"`+tc.header+`"`) {
				t.Fatalf("fields = %q, %v; want a permanent ErrFieldCollision naming %q", args, err, tc.header)
			}
			// Its dead letter keeps the event, not the header.
			f, _ := argsMap(t, tc.c.deadLetterFields(sluice.DeadLetter{Msg: m, Reason: err.Error()}))
			if f[tc.header] == "from the header" {
				t.Errorf("dead letter fields %q: the header replaced the event's field", f)
			}
			if f["trace"] != "t" || !strings.Contains(f[sluice.HeaderFailureReason], tc.header) {
				t.Errorf("dead letter fields %q lack the other header or the reason", f)
			}
		})
	}
	// Headers named like the origin fields are replaced by the origin, as
	// before, and a header named like the payload field is fine in field-map
	// mode when the value has no such member.
	c := codec{payload: "payload", asJSON: true}
	m := &sluice.Message{Value: []byte(`{"a":"1"}`), Headers: []sluice.Header{{Key: "payload", Value: []byte("p")}, {Key: "source_id", Value: []byte("stale")}},
		Origin: sluice.Origin{Topic: "in", Offset: -1, ID: "1-1"}}
	args, err := c.fields(m)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := argsMap(t, args); f["a"] != "1" || f["payload"] != "p" || f["source_id"] != "1-1" {
		t.Errorf("fields %q", f)
	}
}

// The sink writes the origin and failure fields itself, so they cannot be
// the payload or key field.
func TestSinkRefusesItsOwnFieldNames(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, opt := range []SinkOption{WithPayloadField(sluice.HeaderSourceID), WithKeyField(sluice.HeaderFailureReason), WithPayloadField(HeaderEntryError)} {
		_, err := NewSink(context.Background(), "out", WithClient(client), opt)
		if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), "a Sink writes a field of that name itself") {
			t.Errorf("NewSink with a reserved field name: %v, want ErrInvalidConfig saying why", err)
		}
	}
	if c := sourceConfig([]SourceOption{WithPayloadField(sluice.HeaderSourceID)}); c.errs.Err() != nil {
		t.Errorf("a Source may read any payload field: %v", c.errs.Err())
	}
}
