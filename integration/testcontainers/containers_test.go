package testcontainers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	tc "github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// TestAdaptersInContainers starts the servers that the environment does not
// name and runs the adapters' tests against them.
func TestAdaptersInContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts containers and runs the adapters' tests")
	}
	needKafka, needRedis := os.Getenv("KAFKA_BROKERS") == "", os.Getenv("REDIS_ADDR") == ""
	if !needKafka && !needRedis {
		t.Skip("both servers are given by the environment; the root module's tests use them")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if why := dockerAnswers(ctx); why != "" {
		t.Skip("no Docker engine for testcontainers: " + why)
	}

	env := os.Environ()
	if needKafka {
		ctr, err := tckafka.Run(ctx, "confluentinc/confluent-local:7.5.0")
		if ctr != nil {
			t.Cleanup(func() { _ = tc.TerminateContainer(ctr) })
		}
		if err != nil {
			t.Fatalf("testcontainers kafka: %v", err)
		}
		bs, err := ctr.Brokers(ctx)
		if err != nil {
			t.Fatalf("testcontainers kafka: %v", err)
		}
		env = append(env, "KAFKA_BROKERS="+strings.Join(bs, ","))
	}
	if needRedis {
		ctr, err := tcredis.Run(ctx, "redis:7")
		if ctr != nil {
			t.Cleanup(func() { _ = tc.TerminateContainer(ctr) })
		}
		if err != nil {
			t.Fatalf("testcontainers redis: %v", err)
		}
		uri, err := ctr.ConnectionString(ctx)
		if err != nil {
			t.Fatalf("testcontainers redis: %v", err)
		}
		opt, err := redis.ParseURL(uri)
		if err != nil {
			t.Fatalf("testcontainers redis: %v", err)
		}
		env = append(env, "REDIS_ADDR="+opt.Addr)
	}

	flags := strings.Fields(os.Getenv("SLUICE_TESTCONTAINERS_FLAGS"))
	if len(flags) == 0 {
		flags = []string{"-count=1"}
	}
	args := append(append([]string{"test"}, flags...), "./kafka", "./redisstream")
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t.Logf("go %s (in the root module)", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		t.Fatalf("the adapters' tests against containers: %v", err)
	}
}

// dockerAnswers returns why no Docker engine answers, or "".
func dockerAnswers(ctx context.Context) (why string) {
	defer func() {
		if r := recover(); r != nil {
			why = fmt.Sprint("panic: ", r)
		}
	}()
	provider, err := tc.ProviderDefault.GetProvider()
	if err != nil {
		return firstLine(err.Error())
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return firstLine(err.Error())
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
