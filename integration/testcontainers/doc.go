// Package testcontainers runs the integration tests of the kafka and
// redisstream packages against servers in Docker containers, for a machine
// with a Docker engine but without scripts/kafka.sh and scripts/redis.sh.
//
// It is a module of its own so that testcontainers and the Docker client
// stay out of the module graph of every program that imports sluice. It
// starts a Kafka broker (confluent-local) when KAFKA_BROKERS is unset and a
// Redis server (redis:7) when REDIS_ADDR is unset, then runs
// `go test ./kafka ./redisstream` in the root module with both set:
//
//	go test -C integration/testcontainers -timeout 30m ./...
//
// It skips without a Docker engine, and when both variables are already set
// (scripts/test.sh sets them: the root module's tests then use those
// servers). SLUICE_TESTCONTAINERS_FLAGS replaces the inner go test's flags
// (default -count=1).
package testcontainers
