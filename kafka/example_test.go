package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os/signal"
	"slices"
	"syscall"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
	"github.com/sluicehq/sluice/kafka"
)

// A pipeline that reads "events", asks a model about each one's "text" and
// writes the result to "events.enriched", dead-lettering to "events.dlq".
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	brokers := []string{"127.0.0.1:9092"}

	src, err := kafka.NewSource(ctx, brokers, "enricher", []string{"events"},
		kafka.WithInstanceID("enricher-0")) // static member: a quick restart causes no rebalance
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	sink, err := kafka.NewSink(ctx, brokers, "events.enriched",
		kafka.WithDeadLetterTopic("events.dlq"))
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()

	enr, err := jsonenrich.New([]string{"text"},
		func(ctx context.Context, fields []jsonenrich.Field, _ *sluice.Message) (json.RawMessage, error) {
			return json.Marshal(map[string]int{"length": len(fields[0].Text)}) // call your model here
		})
	if err != nil {
		log.Fatal(err)
	}
	p, err := sluice.New(src, enr, sink, sluice.WithConcurrency(16))
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Run(ctx); err != nil { // until SIGINT or SIGTERM
		log.Fatal(err)
	}
}

// The same pipeline against an embedded broker, end to end.
func Example_embedded() {
	cluster, err := kfake.NewCluster(kfake.SeedTopics(2, "events", "events.enriched", "dead_letter"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	ctx := context.Background()

	pub, err := sarama.NewSyncProducer(brokers, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, text := range []string{"hello", "sluice"} {
		if _, _, err := pub.SendMessage(&sarama.ProducerMessage{Topic: "events",
			Value: sarama.StringEncoder(`{"text":"` + text + `"}`)}); err != nil {
			log.Fatal(err)
		}
	}
	_ = pub.Close()

	src, err := kafka.NewSource(ctx, brokers, "enricher", []string{"events"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	sink, err := kafka.NewSink(ctx, brokers, "events.enriched")
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	enr, err := jsonenrich.New([]string{"text"},
		func(_ context.Context, fields []jsonenrich.Field, _ *sluice.Message) (json.RawMessage, error) {
			return json.Marshal(map[string]int{"length": len(fields[0].Text)})
		})
	if err != nil {
		log.Fatal(err)
	}
	// Wrap the sink to see what it wrote; the producer still writes the
	// dead letters.
	written := make(chan []string, 2)
	out := sluice.SinkFunc(func(ctx context.Context, msgs []*sluice.Message) error {
		if err := sink.Write(ctx, msgs); err != nil {
			return err
		}
		var vs []string
		for _, m := range msgs {
			vs = append(vs, string(m.Value))
		}
		written <- vs
		return nil
	})
	p, err := sluice.New(src, enr, out, sluice.WithDeadLetter(sink))
	if err != nil {
		log.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	var values []string
	for len(values) < 2 { // a real service runs until it is told to stop
		values = append(values, <-written...)
	}
	cancel()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	slices.Sort(values)
	for _, v := range values {
		fmt.Println(v)
	}
	// Output:
	// {"text":"hello","ai_enrichment":{"length":5}}
	// {"text":"sluice","ai_enrichment":{"length":6}}
}

// An exactly-once pipeline: outputs, dead letters and the consumed offsets
// commit together, so consumers that read with
// isolation.level=read_committed see every event once, whatever crashes or
// rebalances happen.
func ExampleNewTxnSink() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	brokers := []string{"127.0.0.1:9092"}

	src, err := kafka.NewSource(ctx, brokers, "enricher", []string{"events"},
		kafka.WithInstanceID("enricher-0"), kafka.WithReadCommitted())
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	// One transactional id per instance, the same after a restart.
	sink, err := kafka.NewTxnSink(ctx, brokers, "events.enriched", src, "enricher-0",
		kafka.WithDeadLetterTopic("events.dlq"))
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()

	enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
		return m.WithValue(m.Value), nil // WithValue keeps the event's position, which the transaction commits
	})
	p, err := sluice.New(src, enr, sink) // the sink is also the acker
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
