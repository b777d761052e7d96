// Command enrich-service is examples/enrich-service with OpenTelemetry
// tracing: the same service, flags and exit statuses, built in the
// module github.com/sluicehq/sluice/otel so that the root module does not
// depend on OpenTelemetry.
//
// Tracing is on when the standard environment asks for it
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set,
// or OTEL_TRACES_EXPORTER=otlp|console) and off otherwise:
//
//	OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=sluice-enrich \
//	    go run ./examples/enrich-service -source kafka -brokers 127.0.0.1:9092 ...
//
// Spans go over OTLP/HTTP (protobuf); see sluiceotel.NewTracerProvider for
// every variable read. The spans of the events still in flight are sent
// when the service stops.
package main

import (
	"context"
	"net/url"
	"os"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/examples/enrich-service/service"
	"github.com/sluicehq/sluice/openai"
	sluiceotel "github.com/sluicehq/sluice/otel"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version string

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stdout, os.Stderr,
		service.WithVersion(version), service.WithExtension(tracing)))
}

// tracing adds a Tracer to the pipeline and the enricher when the
// environment configures OpenTelemetry.
func tracing(ctx context.Context, info service.Info) (service.Extra, error) {
	if !sluiceotel.EnvConfigured() {
		info.Log.Info("tracing off: set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER to turn it on")
		return service.Extra{}, nil
	}
	tp, shutdown, err := sluiceotel.NewTracerProvider(ctx, "sluice-enrich", os.Stderr)
	if err != nil {
		return service.Extra{}, err
	}
	sys := "kafka"
	if info.Source == "redis" {
		sys = "redis"
	}
	tr, err := sluiceotel.New(
		sluiceotel.WithTracerProvider(tp),
		sluiceotel.WithConsumerGroup(info.Group),
		sluiceotel.WithMessagingSystem(sys),
		sluiceotel.WithDestinations(info.Output, info.DeadLetter))
	if err != nil {
		_ = shutdown(ctx)
		return service.Extra{}, err
	}
	info.Log.Info("tracing on", "exporter", os.Getenv(sluiceotel.EnvTracesExporter), "endpoint", endpoint())
	return service.Extra{
		Pipeline: []sluice.Option{sluice.WithObserver(tr)},
		Enricher: []openai.Option{openai.WithCallObserver(tr)},
		Close:    shutdown,
	}, nil
}

// endpoint is where spans go, for the log, without any credentials in
// the URL; OTEL_EXPORTER_OTLP_HEADERS, which may hold a token, is never
// logged.
func endpoint() string {
	e := os.Getenv(sluiceotel.EnvTracesEndpoint)
	if e == "" {
		e = os.Getenv(sluiceotel.EnvEndpoint)
	}
	u, err := url.Parse(e)
	if err != nil {
		return "(unparsable)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}
