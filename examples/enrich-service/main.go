// Command enrich-service is a long-running sluice service: it consumes JSON
// events from Kafka or Redis Streams, enriches each one with an
// OpenAI-compatible chat-completion model, and writes the result downstream,
// dead-lettering what cannot be enriched.
//
// Every flag can also be set with an environment variable SLUICE_<NAME>
// (upper case, dashes as underscores): -rate-limit is SLUICE_RATE_LIMIT.
// The model API key is read from SLUICE_MODEL_API_KEY, or from the systemd
// credential model-api-key (LoadCredential=); never from a flag.
//
//	sluice-enrich -source kafka -brokers 127.0.0.1:9092 -input reviews \
//	    -output reviews.enriched -task sentiment -fields review.body \
//	    -model-url https://api.openai.com/v1 -model gpt-4o-mini
//
// Before it consumes anything it checks the model endpoint (the URL
// answers, the key is accepted, the model exists and takes the requests;
// -skip-preflight turns that off). It serves /livez, /readyz, /healthz and
// /metrics on -health-addr. SIGTERM or SIGINT drains in-flight events and
// exits 0 (a second signal exits at once); a stop takes at most
// -drain-timeout + -flush-timeout + 5s (25s by default).
//
// Exit status (also in -h): 0 after a graceful stop; 1 when startup or the
// source fails; 69 when the model endpoint does not answer the preflight;
// 75 when rate limiting outlasted -max-rate-limit-duration; 76 when the
// breaker opened (-breaker events in a row failed with the same
// configuration error); 77 when the model refused the key or the quota is
// spent; 78 for a bad configuration, including credentials, a certificate
// or ACLs that the broker or the service refuses; 79 when the preflight
// found the model URL, name or a parameter wrong. Go itself exits 2 on a panic.
package main

import (
	"os"

	"github.com/sluicehq/sluice/examples/enrich-service/service"
)

// version is set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./examples/enrich-service
//
// When it is empty, the module version and VCS revision recorded by the Go
// toolchain are used.
var version string

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stdout, os.Stderr, service.WithVersion(version)))
}
