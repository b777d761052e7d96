package kafka

// Where integration tests get a broker: KAFKA_BROKERS if set, else a
// testcontainers confluent-local container when a Docker engine answers,
// else skip (or fail when CI=true).

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"
)

const brokerHelp = "no Kafka broker: run `scripts/kafka.sh start` and set KAFKA_BROKERS=127.0.0.1:9092 (or make a Docker engine reachable for testcontainers)"

var broker struct {
	once sync.Once
	addr []string
	why  string
	ctr  *tckafka.KafkaContainer
}

func TestMain(m *testing.M) {
	code := m.Run()
	if broker.ctr != nil {
		_ = testcontainers.TerminateContainer(broker.ctr)
	}
	os.Exit(code)
}

// brokers returns the addresses of a real broker, or skips the test (fails
// it when CI=true).
func brokers(t testing.TB) []string {
	t.Helper()
	broker.once.Do(func() {
		if env := os.Getenv("KAFKA_BROKERS"); env != "" {
			broker.addr = strings.Split(env, ",")
			return
		}
		broker.addr, broker.why = startContainer()
	})
	if broker.addr == nil {
		msg := brokerHelp
		if broker.why != "" {
			msg += " (" + broker.why + ")"
		}
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return broker.addr
}

func startContainer() (addr []string, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			addr, why = nil, fmt.Sprint("docker: ", r)
		}
	}()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return nil, "docker: " + err.Error()
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return nil, "docker: " + err.Error()
	}
	ctr, err := tckafka.Run(ctx, "confluentinc/confluent-local:7.5.0")
	if err != nil {
		return nil, "testcontainers: " + err.Error()
	}
	broker.ctr = ctr
	bs, err := ctr.Brokers(ctx)
	if err != nil {
		return nil, "testcontainers: " + err.Error()
	}
	return bs, ""
}

// createTopic makes a fresh topic with a unique name and returns the name.
func createTopic(t testing.TB, bs []string, prefix string, partitions int32) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	admin, err := sarama.NewClusterAdmin(bs, cfg)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	err = admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	// Wait until every partition has a leader, so that consumers do not
	// start against metadata from before the topic existed.
	client, err := sarama.NewClient(bs, cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := client.RefreshMetadata(name)
		if err == nil {
			var ps []int32
			if ps, err = client.Partitions(name); err == nil && len(ps) == int(partitions) {
				for _, p := range ps {
					if _, lerr := client.Leader(name, p); lerr != nil {
						err = lerr
					}
				}
			} else if err == nil {
				err = fmt.Errorf("%d of %d partitions", len(ps), partitions)
			}
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s not ready: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the broker for a condition
	}
	t.Cleanup(func() {
		if a, err := sarama.NewClusterAdmin(bs, cfg); err == nil {
			_ = a.DeleteTopic(name)
			_ = a.Close()
		}
	})
	return name
}
