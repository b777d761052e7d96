package kafka

// Where integration tests get a broker: KAFKA_BROKERS, else skip (or fail
// when CI=true). The module integration/testcontainers runs these tests
// against a broker in a Docker container.

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

const brokerHelp = "no Kafka broker: run `scripts/kafka.sh start` and set KAFKA_BROKERS=127.0.0.1:9092 (or, with a Docker engine, run the integration/testcontainers module's tests)"

// brokers returns the addresses of a real broker, or skips the test (fails
// it when CI=true).
func brokers(t testing.TB) []string {
	t.Helper()
	env := os.Getenv("KAFKA_BROKERS")
	if env == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(brokerHelp)
		}
		t.Skip(brokerHelp)
	}
	return strings.Split(env, ",")
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
