package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
)

func newFake(t *testing.T, partitions int32, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func TestConfigErrorsNameTheField(t *testing.T) {
	ctx := context.Background()
	bs := []string{"127.0.0.1:1"}
	cases := []struct {
		name  string
		build func() error
		want  string
	}{
		{"no brokers", func() error { _, err := NewSource(ctx, nil, "g", []string{"t"}); return err }, "kafka: brokers: the list is empty; pass at least one host:port"},
		{"bad broker", func() error { _, err := NewSink(ctx, []string{"nohostport"}, "t"); return err }, "brokers"},
		{"no group", func() error { _, err := NewSource(ctx, bs, "", []string{"t"}); return err }, "group"},
		{"bad topic", func() error { _, err := NewSource(ctx, bs, "g", []string{"a b"}); return err }, "topics"},
		{"session vs heartbeat", func() error {
			_, err := NewSource(ctx, bs, "g", []string{"t"}, WithSessionTimeout(time.Second, time.Second))
			return err
		}, "kafka: WithSessionTimeout(1s, 1s): the session timeout is below 3 heartbeats"},
		{"empty instance id", func() error { _, err := NewSource(ctx, bs, "g", []string{"t"}, WithInstanceID("")); return err }, `WithInstanceID("")`},
		{"start position", func() error { _, err := NewSource(ctx, bs, "g", []string{"t"}, WithStartAt(5)); return err }, "WithStartAt(StartAt(5))"},
		{"revoke above rebalance", func() error {
			_, err := NewSource(ctx, bs, "g", []string{"t"}, WithRebalanceTimeout(time.Minute), WithRevokeTimeout(2*time.Minute))
			return err
		}, "WithRevokeTimeout(2m0s)"},
		{"nil logger", func() error { _, err := NewSink(ctx, bs, "t", WithLogger(nil)); return err }, "WithLogger(nil)"},
		{"nil logger on source", func() error { _, err := NewSource(ctx, bs, "g", []string{"t"}, WithLogger(nil)); return err }, "WithLogger(nil)"},
		{"dead letter topic", func() error { _, err := NewSink(ctx, bs, "t", WithDeadLetterTopic("")); return err }, "WithDeadLetterTopic"},
		{"compression", func() error { _, err := NewSink(ctx, bs, "t", WithCompression(42)); return err }, "WithCompression(42)"},
		{"sasl mechanism", func() error { _, err := NewSink(ctx, bs, "t", WithSASL("GSSAPI", "u", "hunter2")); return err }, "mechanism"},
		{"sasl password", func() error { _, err := NewSink(ctx, bs, "t", WithSASL(SASLScramSHA512, "u", "")); return err }, "password"},
		{"nil tls", func() error { _, err := NewSink(ctx, bs, "t", WithTLS(nil)); return err }, "WithTLS(nil)"},
		{"raw sarama config", func() error {
			_, err := NewSink(ctx, bs, "t", WithSaramaConfig(func(c *sarama.Config) { c.Net.MaxOpenRequests = 5 }))
			return err
		}, "MaxOpenRequests"},
		{"connect timeout", func() error { _, err := NewSink(ctx, bs, "t", WithConnectTimeout(0)); return err }, "WithConnectTimeout(0s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.build()
			if !errors.Is(err, sluice.ErrInvalidConfig) {
				t.Fatalf("err = %v, want one matching sluice.ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to name %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("err leaks the password: %q", err)
			}
		})
	}
}

// TestEveryBadOptionAtOnce checks that a constructor reports every bad
// option, each in the package's format.
func TestEveryBadOptionAtOnce(t *testing.T) {
	_, err := NewSource(context.Background(), []string{"127.0.0.1:1"}, "g", []string{"t"},
		WithBufferSize(0), WithLogger(nil), WithCommitInterval(-time.Second))
	if !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	want := "kafka: WithBufferSize(0): the size is below 1; pass at least 1; the default is 1024\n" +
		"kafka: WithLogger(nil): the logger is nil; pass a *slog.Logger, or leave the option out for slog.Default()\n" +
		"kafka: WithCommitInterval(-1s): the interval is not positive; pass a positive duration; the default is 1s"
	if err.Error() != want {
		t.Fatalf("err =\n%s\nwant\n%s", err, want)
	}
}

// TestOptionTypes checks that each option satisfies exactly the
// constructors it applies to: a misplaced option does not compile.
func TestOptionTypes(t *testing.T) {
	for _, o := range []any{WithLogger(testutil.Quiet()), WithClientID("x"), WithVersion(sarama.V3_6_0_0), WithConnectTimeout(time.Second),
		WithTLS(&tls.Config{}), WithSASL(SASLPlain, "u", "p"), WithDialer(nil), WithSaramaConfig(nil)} {
		if _, ok := o.(Option); !ok {
			t.Errorf("%T is not an Option for both sides", o)
		}
	}
	for _, o := range []any{WithSessionTimeout(0, 0), WithRebalanceTimeout(0), WithInstanceID(""), WithStartAt(Newest),
		WithCommitInterval(0), WithRevokeTimeout(0), WithBufferSize(0), WithBalanceStrategies()} {
		if _, ok := o.(SinkOption); ok {
			t.Errorf("source option %T is accepted by NewSink", o)
		}
	}
	for _, o := range []any{WithDeadLetterTopic(""), WithLinger(0), WithCompression(0)} {
		if _, ok := o.(SourceOption); ok {
			t.Errorf("sink option %T is accepted by NewSource", o)
		}
	}
}

func TestSASLAndTLSReachSarama(t *testing.T) {
	c := sinkConfig([]SinkOption{
		WithSASL(SASLScramSHA256, "user", "secret"),
		WithTLS(&tls.Config{ServerName: "kafka.example"}),
		WithSaramaConfig(func(sc *sarama.Config) { sc.ClientID = "raw-wins" }),
	})
	if err := c.errs.Err(); err != nil {
		t.Fatal(err)
	}
	sc, err := c.saramaConfig(func(*sarama.Config) {})
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Net.SASL.Enable || sc.Net.SASL.Mechanism != sarama.SASLTypeSCRAMSHA256 || sc.Net.SASL.SCRAMClientGeneratorFunc == nil {
		t.Fatalf("SASL not configured: %+v", sc.Net.SASL)
	}
	if !sc.Net.TLS.Enable || sc.Net.TLS.Config.ServerName != "kafka.example" {
		t.Fatalf("TLS not configured")
	}
	if sc.ClientID != "raw-wins" {
		t.Fatalf("WithSaramaConfig not applied last: ClientID = %q", sc.ClientID)
	}
	// The SCRAM client speaks the first message of the exchange.
	cl := sc.Net.SASL.SCRAMClientGeneratorFunc()
	if err := cl.Begin("user", "secret", ""); err != nil {
		t.Fatal(err)
	}
	first, err := cl.Step("")
	if err != nil || !strings.HasPrefix(first, "n,,n=user,r=") {
		t.Fatalf("first SCRAM message = %q, %v", first, err)
	}
}

func TestUnreachableBrokerFailsInBoundedTime(t *testing.T) {
	// A listener that accepts and never answers: the worst case, a dial
	// that succeeds and a metadata request that hangs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	for name, addr := range map[string]string{"silent": ln.Addr().String(), "refused": "127.0.0.1:1"} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := NewSource(context.Background(), []string{addr}, "g", []string{"t"},
				WithConnectTimeout(time.Second), WithLogger(testutil.Quiet()))
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("err = %v, want ErrUnreachable", err)
			}
			if !strings.Contains(err.Error(), addr) {
				t.Fatalf("err %q does not name the broker", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %s", d)
			}
		})
	}
}

func TestClassifyProducerErrors(t *testing.T) {
	for _, err := range []error{sarama.ErrMessageSizeTooLarge, sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes"), sarama.ErrInvalidRecord} {
		if !errors.Is(classify("t", err), sluice.ErrPermanent) {
			t.Errorf("classify(%v) not permanent", err)
		}
	}
	for _, err := range []error{sarama.ErrNotLeaderForPartition, sarama.ErrRequestTimedOut, sarama.ErrOutOfBrokers} {
		got := classify("t", err)
		if errors.Is(got, sluice.ErrPermanent) || !errors.Is(got, err) {
			t.Errorf("classify(%v) = %v, want retryable wrapping it", err, got)
		}
	}
}

func TestFakeProducerSettingsAndHeaders(t *testing.T) {
	bs := newFake(t, 1, "out", "dead_letter")
	p, err := NewSink(context.Background(), bs, "out", WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := p.Config()
	if !cfg.Producer.Idempotent || cfg.Producer.RequiredAcks != sarama.WaitForAll || cfg.Net.MaxOpenRequests != 1 ||
		cfg.Producer.Compression != sarama.CompressionLZ4 || cfg.Producer.Flush.Frequency != 5*time.Millisecond ||
		!cfg.Producer.Return.Successes || !cfg.Producer.Return.Errors {
		t.Fatalf("producer settings not applied: %+v", cfg.Producer)
	}
	if err := p.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	in := &sluice.Message{
		Key: []byte("k"), Value: []byte(`{"a":1}`),
		Headers: []sluice.Header{{Key: "trace", Value: []byte("x")}},
		Origin:  sluice.Origin{Topic: "in", Partition: 3, Offset: 42},
	}
	if err := p.Write(context.Background(), []*sluice.Message{in}); err != nil {
		t.Fatal(err)
	}
	err = p.WriteDeadLetters(context.Background(), []sluice.DeadLetter{{Msg: in, Reason: "bad", Attempts: 2, FailedAt: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	out := readAll(t, bs, "out")
	if len(out) != 1 || string(out[0].Key) != "k" || string(out[0].Value) != `{"a":1}` {
		t.Fatalf("output = %+v", out)
	}
	for k, v := range map[string]string{"trace": "x", "source_topic": "in", "source_partition": "3", "source_offset": "42"} {
		if got, _ := header(out[0], k); got != v {
			t.Errorf("output header %s = %q, want %q", k, got, v)
		}
	}
	dl := readAll(t, bs, "dead_letter")
	if len(dl) != 1 || string(dl[0].Key) != "k" || string(dl[0].Value) != `{"a":1}` {
		t.Fatalf("dead letters = %+v", dl)
	}
	for k, v := range map[string]string{"trace": "x", "failure_reason": "bad", "failure_attempts": "2", "source_topic": "in", "source_partition": "3", "source_offset": "42"} {
		if got, _ := header(dl[0], k); got != v {
			t.Errorf("dead-letter header %s = %q, want %q", k, got, v)
		}
	}
	codecs, pids := batchInfo(t, bs, "out", 0)
	if len(codecs) == 0 || codecs[0] != sarama.CompressionLZ4 || pids[0] < 0 {
		t.Fatalf("batches: codecs %v producer ids %v; want LZ4 and an id >= 0", codecs, pids)
	}
}

func TestFakeTooLargeIsPermanent(t *testing.T) {
	bs := newFake(t, 1, "out")
	p, err := NewSink(context.Background(), bs, "out", WithLogger(testutil.Quiet()),
		WithSaramaConfig(func(c *sarama.Config) { c.Producer.MaxMessageBytes = 1000 }))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msgs := []*sluice.Message{{Value: []byte("small")}, {Value: make([]byte, 5000)}, {Value: []byte("small")}}
	err = p.Write(context.Background(), msgs)
	var we sluice.WriteErrors
	if !errors.As(err, &we) || len(we) != 1 || we[0].Index != 1 || !errors.Is(we[0].Err, sluice.ErrPermanent) {
		t.Fatalf("err = %v, want WriteErrors with a permanent error at index 1", err)
	}
}

func TestFakeOutOfOrderAcksCommitOnlyThePrefix(t *testing.T) {
	bs := newFake(t, 1, "in")
	produce(t, bs, "in", 1, 10)
	src, err := NewSource(context.Background(), bs, "g1", []string{"in"}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	msgs := fetchN(t, src, 10, 30*time.Second)
	ack := func(offs ...int64) {
		for _, o := range offs {
			if err := src.Ack(context.Background(), []*sluice.Message{msgs[o]}); err != nil {
				t.Fatal(err)
			}
		}
		if err := src.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ack(9, 8, 5, 1)
	if got := committed(t, bs, "g1", "in", 0); got > 0 {
		t.Fatalf("committed %d with offset 0 unfinished", got)
	}
	ack(0, 2)
	if got := committed(t, bs, "g1", "in", 0); got != 3 {
		t.Fatalf("committed %d, want 3", got)
	}
}

func TestFakePauseStopsBrokerFetches(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bs := c.ListenAddrs()
	var paused atomic.Bool
	var fetchesWhilePaused atomic.Int64
	c.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if paused.Load() {
			for _, tp := range req.(*kmsg.FetchRequest).Topics {
				if len(tp.Partitions) > 0 {
					fetchesWhilePaused.Add(1)
				}
			}
		}
		return nil, nil, false
	})

	produce(t, bs, "in", 1, 5)
	src, err := NewSource(context.Background(), bs, "g", []string{"in"}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fetchN(t, src, 5, 30*time.Second)

	src.Pause()
	// A fetch built just before the pause may still arrive; count from the
	// next one on.
	paused.Store(true)
	produce(t, bs, "in", 1, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	msgs, err := src.Fetch(ctx, 10)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch while paused returned %d messages, err %v; want nothing", len(msgs), err)
	}
	if n := fetchesWhilePaused.Load(); n > 1 {
		t.Fatalf("%d fetch requests for the partition while paused", n)
	}
	paused.Store(false)
	src.Resume()
	got := fetchN(t, src, 5, 30*time.Second)
	if got[0].Origin.Offset != 5 {
		t.Fatalf("after resume got offset %d, want 5", got[0].Origin.Offset)
	}
}

func TestAckForRevokedClaimIsIgnored(t *testing.T) {
	bs := newFake(t, 1, "in")
	produce(t, bs, "in", 1, 3)
	src, err := NewSource(context.Background(), bs, "g", []string{"in"}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	msgs := fetchN(t, src, 3, 30*time.Second)
	c := msgs[0].Token.(*claim)
	c.mu.Lock()
	c.revoked = true
	c.mu.Unlock()
	if err := src.Ack(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if got := src.ignored.Load(); got != 3 {
		t.Fatalf("ignored %d acks, want 3", got)
	}
	if err := src.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, bs, "g", "in", 0); got > 0 {
		t.Fatalf("revoked claim committed %d", got)
	}
}

func TestFakeReadyAndLag(t *testing.T) {
	bs := newFake(t, 2, "in")
	produce(t, bs, "in", 2, 6)
	src, err := NewSource(context.Background(), bs, "g", []string{"in"}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	msgs := fetchN(t, src, 6, 30*time.Second)
	if err := src.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after fetching: %v", err)
	}
	lag, err := src.Lag(context.Background())
	if err != nil || lag.Total != 6 || lag.ByPartition["in/0"] != 3 {
		t.Fatalf("lag before acks = %+v, %v; want 6 (3 on in/0)", lag, err)
	}
	if err := src.Ack(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if err := src.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	lag, err = src.Lag(context.Background())
	if err != nil || lag.Total != 0 {
		t.Fatalf("lag after acks = %+v, %v; want 0", lag, err)
	}
	src.Close()
	if err := src.Ready(context.Background()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Ready after Close = %v", err)
	}
	if _, err := src.Fetch(context.Background(), 1); !errors.Is(err, sluice.ErrSourceClosed) {
		t.Fatalf("Fetch after Close = %v", err)
	}
}

func TestClientConfigCarriesSecurity(t *testing.T) {
	sc, err := ClientConfig(WithClientID("probe"), WithSASL(SASLScramSHA512, "u", "secret"), WithTLS(&tls.Config{ServerName: "kafka.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if sc.ClientID != "probe" || !sc.Net.TLS.Enable || !sc.Net.SASL.Enable ||
		sc.Net.SASL.Mechanism != sarama.SASLTypeSCRAMSHA512 || sc.Net.SASL.SCRAMClientGeneratorFunc == nil {
		t.Fatalf("security settings not carried: %+v", sc.Net)
	}
	_, err = ClientConfig(WithClientID(""))
	if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), `kafka: WithClientID(""): the client id is empty`) {
		t.Fatalf("err = %v", err)
	}
}

func TestClassifyRefusals(t *testing.T) {
	for _, err := range []error{sarama.ErrTopicAuthorizationFailed, fmt.Errorf("wrapped: %w", sarama.ErrClusterAuthorizationFailed)} {
		got := classify("dlq", err)
		if !errors.Is(got, sluice.ErrPermanent) || !errors.Is(got, sluice.ErrFatal) || !errors.Is(got, ErrAccessDenied) || !errors.Is(got, err) || !strings.Contains(got.Error(), `"dlq"`) {
			t.Errorf("classify(%v) = %v, want permanent, ErrAccessDenied, naming the topic", err, got)
		}
	}
	cases := []struct {
		err  error
		want error
	}{
		{fmt.Errorf("%w: %w", sarama.ErrOutOfBrokers, sarama.ErrSASLAuthenticationFailed), ErrAuthentication},
		{fmt.Errorf("%w: %w", sarama.ErrOutOfBrokers, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), ErrTLS},
		{fmt.Errorf("dial: %w", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "10.0.0.1"}), ErrTLS},
		{sarama.ErrGroupAuthorizationFailed, ErrAccessDenied},
		{fmt.Errorf("dial: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), ErrTLS},
	}
	for _, c := range cases {
		got, ok := classifyConnect(c.err)
		if !ok || !errors.Is(got, c.want) || !errors.Is(got, c.err) {
			t.Errorf("classifyConnect(%v) = %v, %v; want %v wrapping it", c.err, got, ok, c.want)
		}
	}
	for _, err := range []error{sarama.ErrOutOfBrokers, io.EOF, nil} {
		if got, ok := classifyConnect(err); ok || !errors.Is(got, err) {
			t.Errorf("classifyConnect(%v) = %v, %v; want it unchanged", err, got, ok)
		}
	}
}

// The output's record headers are the message's headers then exactly the
// origin headers the core defines, for a Kafka origin and for a stream
// entry's (an event read from Redis and written to Kafka), and no record's
// header values share memory with another record's.
func TestRecordHeadersMatchTheOriginHeaders(t *testing.T) {
	in := []sluice.Header{{Key: "trace", Value: []byte("t1")}, {Key: "empty", Value: nil}}
	for _, o := range []sluice.Origin{
		{Topic: "orders", Partition: 7, Offset: 123456789},
		{Topic: "o", Partition: 0, Offset: 0},
		{Topic: "in", Partition: 2147483647, Offset: 9223372036854775807},
		{Topic: "sluice:events", ID: "1700000000000-42"},
	} {
		a := recordHeaders(in, o)
		want := sluice.AppendOriginHeaders(slices.Clone(in), o)
		if got := consume(a); !sameHeaders(got, want) {
			t.Errorf("%v: headers %q, want %q", o, got, want)
		}
		// A consumer that appends to one value must not change another.
		b := recordHeaders(nil, o)
		for i := range b {
			b[i].Value = append(b[i].Value, '!')
		}
		if got := consume(a); !sameHeaders(got, want) {
			t.Errorf("%v: appending to another record's header values changed these: %q", o, got)
		}
		for i := range a[len(in):] {
			h := &a[len(in)+i]
			before := string(a[len(a)-1].Value)
			h.Value = append(h.Value, 'x')
			if i < len(a)-len(in)-1 && string(a[len(a)-1].Value) != before {
				t.Errorf("%v: appending to %s changed the idempotency key to %q", o, h.Key, a[len(a)-1].Value)
			}
		}
	}
}

// A null key or value stays null on the output record, and an empty one
// stays empty: the sink's batched encoders do not turn one into the other.
func TestFakeNullAndEmptyKeysAndValues(t *testing.T) {
	bs := newFake(t, 1, "out")
	p, err := NewSink(context.Background(), bs, "out", WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cases := []struct{ key, value []byte }{
		{nil, []byte(`{"n":0}`)},
		{[]byte{}, []byte(`{"n":1}`)},
		{[]byte("k"), nil},
		{[]byte("k"), []byte{}},
	}
	var msgs []*sluice.Message
	for i, c := range cases {
		msgs = append(msgs, &sluice.Message{Key: c.key, Value: c.value, Origin: sluice.Origin{Topic: "in", Offset: int64(i)}})
	}
	if err := p.Write(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	out := readAll(t, bs, "out")
	if len(out) != len(cases) {
		t.Fatalf("read %d records, want %d", len(out), len(cases))
	}
	for _, r := range out {
		off, _ := header(r, "source_offset")
		i, _ := strconv.Atoi(off)
		c := cases[i]
		if (r.Key == nil) != (c.key == nil) || string(r.Key) != string(c.key) {
			t.Errorf("record %d: key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, c.key, c.key == nil)
		}
		if (r.Value == nil) != (c.value == nil) || string(r.Value) != string(c.value) {
			t.Errorf("record %d: value %q (nil %v), want %q (nil %v)", i, r.Value, r.Value == nil, c.value, c.value == nil)
		}
	}
}
