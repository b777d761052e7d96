package main_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/hex"
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

func brokers(t *testing.T) []string {
	const help = "no Kafka broker for the tracing end-to-end test: run `scripts/kafka.sh start` and set KAFKA_BROKERS=127.0.0.1:9092"
	if v := os.Getenv("KAFKA_BROKERS"); v != "" {
		return strings.Split(v, ",")
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(help)
	}
	t.Skip(help)
	return nil
}

// TestTraceThroughTheService runs the traced enrich-service as a process
// against a real Kafka broker, the fake model and an OTLP/HTTP receiver: a
// record whose producer set traceparent comes out enriched with a
// traceparent in the same trace, and the service's spans reach the
// receiver with the producer's span as the parent of the event's span.
func TestTraceThroughTheService(t *testing.T) {
	bs := brokers(t)
	bin := filepath.Join(t.TempDir(), "enrich-service")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rc := &receiver{}
	otlp := httptest.NewServer(rc)
	defer otlp.Close()
	model := llmtest.NewServer()
	defer model.Close()

	suffix := fmt.Sprint(time.Now().UnixNano())
	input, output, dead := "trace-in-"+suffix, "trace-out-"+suffix, "trace-dlq-"+suffix
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	admin, err := sarama.NewClusterAdmin(bs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, topic := range []string{input, output, dead} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = admin.DeleteTopic(topic) }()
	}
	prod, err := sarama.NewSyncProducer(bs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	traceparent := "00-" + producerTrace + "-" + producerSpan + "-01"
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{
		Topic: input, Value: sarama.StringEncoder(`{"id":1,"text":"a great product"}`),
		Headers: []sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte(traceparent)}},
	}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"SLUICE_SOURCE=kafka", "SLUICE_BROKERS="+strings.Join(bs, ","),
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
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("service log:\n%s", logs.String())
			logMu.Unlock()
		}
	}()

	// The enriched record, read back from the output topic.
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
	var out *sarama.ConsumerMessage
	select {
	case out = <-pc.Messages():
	case err := <-exited:
		t.Fatalf("the service exited before writing the output: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no output record within 60s")
	}
	var outParent string
	for _, h := range out.Headers {
		if string(h.Key) == "traceparent" {
			outParent = string(h.Value)
		}
	}
	parts := strings.Split(outParent, "-")
	if len(parts) != 4 || parts[1] != producerTrace || parts[2] == producerSpan {
		t.Fatalf("output traceparent %q, want the producer's trace %s with Sluice's span", outParent, producerTrace)
	}
	if !strings.Contains(string(out.Value), `"enrichment"`) && !strings.Contains(string(out.Value), `"sentiment"`) {
		t.Errorf("output %s is not enriched", out.Value)
	}

	// SIGTERM drains and flushes the spans to the receiver.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the service exited with %v after SIGTERM", err)
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
