// Package e2e holds the end-to-end tests of the example mains: they build
// enrich-service and verify, run them as processes against a real Kafka
// (KAFKA_BROKERS) or Redis (REDIS_ADDR) and a fake model, stop and restart the
// service mid-stream with SIGTERM, and check that verify finds every event
// enriched or dead-lettered. The typo run (safety_test.go) gives the service
// a model URL with one character wrong and checks that the preflight, and
// without it the breaker, keep the input out of the dead letters. The
// package has no code of its own.
//
//	scripts/kafka.sh start; scripts/redis.sh start
//	KAFKA_BROKERS=127.0.0.1:9092 REDIS_ADDR=127.0.0.1:6379 go test ./examples/e2e
//
// Without the variables the tests skip, saying how to get a server; under
// CI=true they fail instead. E2E_LOGS=1 prints the services' logs.
package e2e
