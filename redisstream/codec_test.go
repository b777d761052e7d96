package redisstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

func argsMap(t *testing.T, args []any) (map[string]string, []string) {
	t.Helper()
	if len(args)%2 != 0 {
		t.Fatalf("odd field list %v", args)
	}
	m := map[string]string{}
	var order []string
	for i := 0; i < len(args); i += 2 {
		k := args[i].(string)
		if _, dup := m[k]; dup {
			t.Errorf("field %q written twice", k)
		}
		switch v := args[i+1].(type) {
		case []byte:
			m[k] = string(v)
		case string:
			m[k] = v
		default:
			t.Fatalf("field %q has a %T value", k, v)
		}
		order = append(order, k)
	}
	return m, order
}

func TestDecodePayloadAndHeaders(t *testing.T) {
	c := codec{payload: "payload", key: "key"}
	m, err := c.decode("in", redis.XMessage{ID: "1700000000123-4", Values: map[string]any{
		"payload": `{"a":1}`, "key": "k1", "zeta": "z", "alpha": "a",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Value) != `{"a":1}` || string(m.Key) != "k1" {
		t.Errorf("value %q key %q", m.Value, m.Key)
	}
	if len(m.Headers) != 2 || m.Headers[0].Key != "alpha" || m.Headers[1].Key != "zeta" {
		t.Errorf("headers %v, want alpha, zeta in order", m.Headers)
	}
	want := sluice.Origin{Topic: "in", Offset: -1, ID: "1700000000123-4"}
	if m.Origin != want {
		t.Errorf("origin %+v, want %+v", m.Origin, want)
	}
	if !m.Timestamp.Equal(time.UnixMilli(1700000000123)) {
		t.Errorf("timestamp %v", m.Timestamp)
	}
}

func TestDecodeMissingPayload(t *testing.T) {
	c := codec{payload: "payload"}
	m, err := c.decode("in", redis.XMessage{ID: "1-0", Values: map[string]any{"other": "x"}})
	if !errors.Is(err, ErrMissingPayload) {
		t.Fatalf("err %v, want ErrMissingPayload", err)
	}
	if m == nil || len(m.Value) != 0 {
		t.Fatalf("message %+v, want one with an empty value", m)
	}
	if v, ok := m.Header(HeaderEntryError); !ok || len(v) == 0 {
		t.Errorf("no %s header: %v", HeaderEntryError, m.Headers)
	}
	if v, _ := m.Header("other"); string(v) != "x" {
		t.Errorf("other fields lost: %v", m.Headers)
	}
}

func TestFieldsRoundTrip(t *testing.T) {
	c := codec{payload: "payload", key: "key"}
	in := &sluice.Message{
		Key: []byte("k"), Value: []byte(`{"x":1}`),
		Headers: []sluice.Header{{Key: "trace", Value: []byte("t1")}, {Key: HeaderEntryError, Value: []byte("x")}, {Key: "source_id", Value: []byte("stale")}},
		Origin:  sluice.Origin{Topic: "in", Offset: -1, ID: "5-1"},
	}
	args, err := c.fields(in)
	if err != nil {
		t.Fatal(err)
	}
	m, order := argsMap(t, args)
	want := map[string]string{"payload": `{"x":1}`, "key": "k", "trace": "t1", "source_stream": "in", "source_id": "5-1", "idempotency_key": "in/5-1"}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("fields %v, want %v", m, want)
	}
	if order[0] != "payload" {
		t.Errorf("payload is not the first field: %v", order)
	}
}

func TestFieldsAsJSON(t *testing.T) {
	c := codec{payload: "payload", asJSON: true}
	m, err := c.decode("in", redis.XMessage{ID: "1-0", Values: map[string]any{"b": "2", "a": `say "hi"`}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(m.Value); got != `{"a":"say \"hi\"","b":"2"}` {
		t.Errorf("value %s", got)
	}
	if len(m.Headers) != 0 {
		t.Errorf("headers %v, want none", m.Headers)
	}
	out := m.WithValue([]byte(`{"a":"A","n":3,"obj":{"k":[1]},"ai_enrichment":{"s":"x"}}`))
	args, err := c.fields(out)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := argsMap(t, args)
	want := map[string]string{"a": "A", "n": "3", "obj": `{"k":[1]}`, "ai_enrichment": `{"s":"x"}`, "source_stream": "in", "source_id": "1-0", "idempotency_key": "in/1-0"}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Errorf("fields %v, want %v", f, want)
	}
	_, err = c.fields(m.WithValue([]byte(`[1,2]`)))
	if !errors.Is(err, ErrNotJSONObject) || !errors.Is(err, sluice.ErrPermanent) {
		t.Errorf("array value: err %v, want a permanent ErrNotJSONObject", err)
	}
}

func TestDeadLetterFields(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	msg := &sluice.Message{
		Value: []byte("raw \x00 bytes"), Headers: []sluice.Header{{Key: "trace", Value: []byte("t")}},
		Origin: sluice.Origin{Topic: "in", Offset: -1, ID: "9-9"},
	}
	d := sluice.DeadLetter{Msg: msg, Reason: "model said no", Attempts: 3, FailedAt: now}
	f, _ := argsMap(t, codec{payload: "payload"}.deadLetterFields(d))
	want := map[string]string{
		"payload": "raw \x00 bytes", "trace": "t", "failure_reason": "model said no", "failure_attempts": "3",
		"failure_time": "2026-01-02T03:04:05Z", "source_stream": "in", "source_id": "9-9", "idempotency_key": "in/9-9",
	}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Errorf("fields %v\nwant %v", f, want)
	}
	// Field-map mode writes the original fields back; a value that is not
	// an object stays whole under the payload field.
	msg.Value = []byte(`{"a":"1"}`)
	f, _ = argsMap(t, codec{payload: "payload", asJSON: true}.deadLetterFields(d))
	if f["a"] != "1" || f["failure_reason"] != "model said no" {
		t.Errorf("fields-as-JSON dead letter %v", f)
	}
	msg.Value = []byte(`nope`)
	f, _ = argsMap(t, codec{payload: "payload", asJSON: true}.deadLetterFields(d))
	if f["payload"] != "nope" {
		t.Errorf("non-object dead letter %v", f)
	}
}

func TestOptionsValidation(t *testing.T) {
	ctx := context.Background()
	_, err := NewSource(ctx, "", "", WithMinIdle(0), WithBlock(0), WithStartAt(7), WithPayloadField(""), WithMaxReadCount(0), WithConsumer(""), WithLogger(nil))
	if !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("err %v, want ErrInvalidConfig", err)
	}
	for _, name := range []string{"redisstream: WithMinIdle(0s): the time is below 1ms; ", "WithBlock(0s)", "WithStartAt(StartAt(7))",
		`WithPayloadField("")`, "WithMaxReadCount(0)", `WithConsumer("")`, "WithLogger(nil)",
		"redisstream: stream: the stream name is empty", "redisstream: group: the consumer group name is empty"} {
		if !contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	_, err = NewSink(ctx, "out", WithClient(redis.NewClient(&redis.Options{})), WithAddr("x:1"), WithMaxLen(-1), WithDeadLetterStream(""), WithCredentials("", ""))
	for _, name := range []string{"WithClient", "WithMaxLen(-1)", `WithDeadLetterStream("")`, "WithCredentials"} {
		if err == nil || !contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	if !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("err %v, want ErrInvalidConfig", err)
	}
	if c := sourceConfig(nil); c.consumer != "" || defaultConsumer() == "" {
		t.Error("empty default consumer name")
	}
	if got := sourceConfig(nil).startAt.groupID(); got != "0" {
		t.Errorf("a new group starts at %q by default, want 0 (the oldest entry)", got)
	}
	if got := sourceConfig([]SourceOption{WithStartAt(Newest)}).startAt.groupID(); got != "$" {
		t.Errorf("WithStartAt(Newest) starts a new group at %q, want $", got)
	}
}

// TestOptionTypes checks that each option satisfies exactly the
// constructors it applies to: a misplaced option does not compile.
func TestOptionTypes(t *testing.T) {
	for _, o := range []any{WithClient(nil), WithAddr(""), WithCredentials("", ""), WithDB(0), WithTLS(nil),
		WithPayloadField(""), WithKeyField(""), WithFieldsAsJSON(), WithLogger(nil)} {
		if _, ok := o.(Option); !ok {
			t.Errorf("%T is not an Option for both sides", o)
		}
	}
	for _, o := range []any{WithConsumer(""), WithStartAt(Newest), WithMinIdle(0), WithClaimInterval(0), WithBlock(0), WithMaxReadCount(0)} {
		if _, ok := o.(SinkOption); ok {
			t.Errorf("source option %T is accepted by NewSink", o)
		}
	}
	for _, o := range []any{WithMaxLen(0), WithDeadLetterStream("")} {
		if _, ok := o.(SourceOption); ok {
			t.Errorf("sink option %T is accepted by NewSource", o)
		}
	}
}

// TestConstructorsCheckTheServer checks that the constructors fail fast
// when the server does not answer.
func TestConstructorsCheckTheServer(t *testing.T) {
	ctx := context.Background()
	if _, err := NewSource(ctx, "s", "g", WithAddr("127.0.0.1:1")); !errors.Is(err, ErrUnreachable) {
		t.Errorf("NewSource with no server: %v, want ErrUnreachable", err)
	}
	if _, err := NewSink(ctx, "s", WithAddr("127.0.0.1:1")); !errors.Is(err, ErrUnreachable) {
		t.Errorf("NewSink with no server: %v, want ErrUnreachable", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestConnectionOptions(t *testing.T) {
	tc := &tls.Config{ServerName: "redis.internal", MinVersion: tls.VersionTLS12}
	cfg := sinkConfig([]SinkOption{WithAddr("redis.internal:6380"), WithCredentials("app", "s3cret"), WithDB(3), WithTLS(tc)})
	if err := cfg.errs.Err(); err != nil {
		t.Fatal(err)
	}
	client, owned := cfg.connect()
	defer client.Close()
	if !owned {
		t.Error("a client the sink built is not closed by it")
	}
	o := client.(*redis.Client).Options()
	if o.Addr != "redis.internal:6380" || o.Username != "app" || o.Password != "s3cret" || o.DB != 3 || o.TLSConfig != tc {
		t.Errorf("client options addr %q user %q db %d tls %v", o.Addr, o.Username, o.DB, o.TLSConfig != nil)
	}
	if a := addrOf(client); a != "redis.internal:6380" || contains(a, "s3cret") {
		t.Errorf("addrOf = %q", a)
	}
	// A user-built client is used as is and not closed.
	c := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	defer c.Close()
	src, err := NewSource(context.Background(), "in", "g", WithClient(c))
	if err != nil {
		t.Fatal(err)
	}
	if src.Client() != c {
		t.Error("WithClient: the source does not use the given client")
	}
	_ = src.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Errorf("the given client after the source was closed: %v", err)
	}
}
