package main_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/llmtest"
)

// The producer's trace context on the input record.
const (
	producerTrace = "0af7651916cd43dd8448eb211c80319c"
	producerSpan  = "b7ad6b7169203331"
)

// receiver is an OTLP/HTTP trace receiver: it decodes each
// ExportTraceServiceRequest (protobuf, optionally gzipped) as a collector
// does and keeps the spans.
type receiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
	bad      []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = z
	}
	data, err := io.ReadAll(body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(data, &req)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
		rc.bad = append(rc.bad, fmt.Sprintf("%s %s %s: %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				rc.services = append(rc.services, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			rc.spans = append(rc.spans, ss.Spans...)
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (rc *receiver) named(prefix string) []*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range rc.spans {
		if strings.HasPrefix(s.Name, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// serverAddr reads env, or skips the test saying how to get a server;
// under CI=true it fails instead.
func serverAddr(t *testing.T, env, help string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(help)
	}
	t.Skip(help)
	return ""
}

// backend is the broker a run uses: how to publish the input and read
// the output back, with the trace context.
type backend struct {
	name string
	env  []string // SLUICE_* variables naming the server
	// setup creates the topics or streams and removes them at the end.
	setup func(t *testing.T, names ...string)
	// publish writes one event whose producer set traceparent.
	publish func(t *testing.T, input string, value []byte, traceparent string)
	// read returns the first record of output and its traceparent,
	// waiting until there is one or done is closed.
	read func(t *testing.T, output string, done <-chan struct{}) (value []byte, traceparent string)
}

func kafkaBackend(t *testing.T) backend {
	addr := serverAddr(t, "KAFKA_BROKERS", "no Kafka broker for the tracing end-to-end test: run `scripts/kafka.sh start` and set KAFKA_BROKERS=127.0.0.1:9092")
	bs := strings.Split(addr, ",")
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	return backend{
		name: "kafka",
		env:  []string{"SLUICE_SOURCE=kafka", "SLUICE_BROKERS=" + addr},
		setup: func(t *testing.T, names ...string) {
			admin, err := sarama.NewClusterAdmin(bs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = admin.Close() })
			for _, topic := range names {
				if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = admin.DeleteTopic(topic) })
			}
		},
		publish: func(t *testing.T, input string, value []byte, traceparent string) {
			prod, err := sarama.NewSyncProducer(bs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{
				Topic: input, Value: sarama.ByteEncoder(value),
				Headers: []sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte(traceparent)}},
			}); err != nil {
				t.Fatal(err)
			}
		},
		read: func(t *testing.T, output string, done <-chan struct{}) ([]byte, string) {
			cons, err := sarama.NewConsumer(bs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			pc, err := cons.ConsumePartition(output, 0, sarama.OffsetOldest)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			select {
			case m := <-pc.Messages():
				for _, h := range m.Headers {
					if string(h.Key) == "traceparent" {
						return m.Value, string(h.Value)
					}
				}
				return m.Value, ""
			case <-done:
				t.Fatal("the service exited before writing the output")
			case <-time.After(60 * time.Second):
				t.Fatal("no output record within 60s")
			}
			return nil, ""
		},
	}
}

func redisBackend(t *testing.T) backend {
	addr := serverAddr(t, "REDIS_ADDR", "no Redis server for the tracing end-to-end test: run `scripts/redis.sh start` and set REDIS_ADDR=127.0.0.1:6379")
	client := func() *redis.Client { return redis.NewClient(&redis.Options{Addr: addr}) }
	return backend{
		name: "redis",
		env:  []string{"SLUICE_SOURCE=redis", "SLUICE_REDIS_ADDR=" + addr},
		setup: func(t *testing.T, names ...string) {
			t.Cleanup(func() {
				c := client()
				defer c.Close()
				c.Del(context.Background(), names...)
			})
		},
		publish: func(t *testing.T, input string, value []byte, traceparent string) {
			c := client()
			defer c.Close()
			if err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: input, Values: []any{"payload", value, "traceparent", traceparent}}).Err(); err != nil {
				t.Fatal(err)
			}
		},
		read: func(t *testing.T, output string, done <-chan struct{}) ([]byte, string) {
			c := client()
			defer c.Close()
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-done:
					t.Fatal("the service exited before writing the output")
				default:
				}
				// A blocking read: it returns as soon as the entry is there.
				res, err := c.XRead(context.Background(), &redis.XReadArgs{Streams: []string{output, "0"}, Count: 1, Block: time.Second}).Result()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				v := res[0].Messages[0].Values
				p, _ := v["payload"].(string)
				tp, _ := v["traceparent"].(string)
				return []byte(p), tp
			}
			t.Fatal("no output entry within 60s")
			return nil, ""
		},
	}
}

func TestTraceThroughTheServiceKafka(t *testing.T) { testTrace(t, kafkaBackend(t)) }

func TestTraceThroughTheServiceRedis(t *testing.T) { testTrace(t, redisBackend(t)) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// build builds the traced service once per test binary.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-otel-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "enrich-service")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// testTrace runs the traced enrich-service as a process against a real
// broker, the fake model and an OTLP/HTTP receiver: an event whose
// producer set traceparent comes out enriched with a traceparent in the
// same trace, and the service's spans reach the receiver with the
// producer's span as the parent of the event's span.
func testTrace(t *testing.T, b backend) {
	bin := build(t)
	rc := &receiver{}
	otlp := httptest.NewServer(rc)
	defer otlp.Close()
	model := llmtest.NewServer()
	defer model.Close()

	suffix := fmt.Sprint(time.Now().UnixNano())
	input, output, dead := "trace-in-"+suffix, "trace-out-"+suffix, "trace-dlq-"+suffix
	b.setup(t, input, output, dead)
	traceparent := "00-" + producerTrace + "-" + producerSpan + "-01"
	b.publish(t, input, []byte(`{"id":1,"text":"a great product"}`), traceparent)

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Env = append(cmd.Env,
		"SLUICE_INPUT="+input, "SLUICE_OUTPUT="+output, "SLUICE_DEAD_LETTER="+dead, "SLUICE_GROUP=trace-"+suffix,
		"SLUICE_MODEL_URL="+model.BaseURL(), "SLUICE_MODEL=gpt-test", "SLUICE_TASK=sentiment", "SLUICE_FIELDS=text",
		"SLUICE_HEALTH_ADDR=127.0.0.1:0", "SLUICE_LOG_FORMAT=json",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.URL, "OTEL_SERVICE_NAME=sluice-enrich-e2e",
	)
	var logs bytes.Buffer
	var logMu sync.Mutex
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); _ = pw.Close(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("service log:\n%s", logs.String())
			logMu.Unlock()
		}
	}()

	value, outParent := b.read(t, output, done)
	parts := strings.Split(outParent, "-")
	if len(parts) != 4 || parts[1] != producerTrace || parts[2] == producerSpan {
		t.Fatalf("output traceparent %q, want the producer's trace %s with Sluice's span", outParent, producerTrace)
	}
	if !strings.Contains(string(value), `"sentiment"`) {
		t.Errorf("output %s is not enriched", value)
	}

	// SIGTERM drains and flushes the spans to the receiver.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("the service exited with %v after SIGTERM", waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the service did not exit within 60s of SIGTERM")
	}

	rc.mu.Lock()
	bad, services := rc.bad, rc.services
	rc.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("the receiver refused requests: %v", bad)
	}
	if len(services) == 0 || services[0] != "sluice-enrich-e2e" {
		t.Errorf("service.name %v, want sluice-enrich-e2e from OTEL_SERVICE_NAME", services)
	}
	procs := rc.named("process " + input)
	if len(procs) != 1 {
		t.Fatalf("%d process spans received, want 1", len(procs))
	}
	p := procs[0]
	if hex.EncodeToString(p.TraceId) != producerTrace || hex.EncodeToString(p.ParentSpanId) != producerSpan {
		t.Errorf("process span in trace %x under %x, want the producer's %s/%s", p.TraceId, p.ParentSpanId, producerTrace, producerSpan)
	}
	if sys := stringAttr(p, "messaging.system"); sys != b.name {
		t.Errorf("messaging.system = %q, want %q", sys, b.name)
	}
	chats := rc.named("chat gpt-test")
	if len(chats) != 1 || !bytes.Equal(chats[0].ParentSpanId, p.SpanId) {
		t.Errorf("want one chat span under the process span, got %v", chats)
	}
	sends := rc.named("send " + output)
	if len(sends) != 1 || !bytes.Equal(sends[0].ParentSpanId, p.SpanId) {
		t.Fatalf("want one send span under the process span, got %v", sends)
	}
	if got := hex.EncodeToString(sends[0].SpanId); got != parts[2] {
		t.Errorf("the output's traceparent names span %s, want the send span %s", parts[2], got)
	}
}

func stringAttr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}
