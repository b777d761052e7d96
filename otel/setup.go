package sluiceotel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sluicehq/sluice"
)

// Environment variables [NewTracerProvider] reads itself; the OTLP
// exporter and the SDK read the others of the specification
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG).
const (
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

// EnvConfigured reports whether the environment asks for tracing: an OTLP
// endpoint is set, or OTEL_TRACES_EXPORTER names an exporter other than
// "none", and OTEL_SDK_DISABLED is not "true". Services use it to keep
// tracing off unless asked for.
func EnvConfigured() bool {
	if strings.EqualFold(os.Getenv(EnvSDKDisabled), "true") {
		return false
	}
	if e := strings.TrimSpace(os.Getenv(EnvTracesExporter)); e != "" {
		return e != "none"
	}
	return os.Getenv(EnvEndpoint) != "" || os.Getenv(EnvTracesEndpoint) != ""
}

// Shutdown flushes the spans a provider still holds and stops it.
type Shutdown func(context.Context) error

// NewTracerProvider builds a provider from the standard OpenTelemetry
// environment, for a service named serviceName (OTEL_SERVICE_NAME wins):
//
//   - OTEL_TRACES_EXPORTER: "otlp" (the default) sends spans over OTLP/HTTP
//     with protobuf to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
//     OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318);
//     "console" prints them as JSON to console (os.Stdout when nil);
//     "none" records nothing.
//   - OTEL_EXPORTER_OTLP_PROTOCOL: only "http/protobuf" is supported.
//   - OTEL_SDK_DISABLED=true records nothing.
//
// Spans are batched. Call the returned Shutdown when the program stops,
// after the pipeline, so that the last spans are sent. Bad settings are
// reported as errors matching [sluice.ErrInvalidConfig].
func NewTracerProvider(ctx context.Context, serviceName string, console io.Writer) (trace.TracerProvider, Shutdown, error) {
	none := func(context.Context) error { return nil }
	if strings.EqualFold(os.Getenv(EnvSDKDisabled), "true") {
		return noop.NewTracerProvider(), none, nil
	}
	var exp sdktrace.SpanExporter
	switch e := strings.TrimSpace(os.Getenv(EnvTracesExporter)); e {
	case "none":
		return noop.NewTracerProvider(), none, nil
	case "console":
		if console == nil {
			console = os.Stdout
		}
		x, err := stdouttrace.New(stdouttrace.WithWriter(console))
		if err != nil {
			return nil, nil, fmt.Errorf("sluiceotel: console exporter: %w", err)
		}
		exp = x
	case "", "otlp":
		proto := os.Getenv(EnvTracesProtocol)
		if proto == "" {
			proto = os.Getenv(EnvProtocol)
		}
		if proto != "" && proto != "http/protobuf" {
			return nil, nil, fmt.Errorf("%w: sluiceotel: %s=%q: only http/protobuf is supported; unset it or set http/protobuf (port 4318)", sluice.ErrInvalidConfig, EnvProtocol, proto)
		}
		x, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: sluiceotel: OTLP exporter: %w", sluice.ErrInvalidConfig, err)
		}
		exp = x
	default:
		return nil, nil, fmt.Errorf("%w: sluiceotel: %s=%q: not a known exporter; use otlp, console or none", sluice.ErrInvalidConfig, EnvTracesExporter, e)
	}
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(semconv.ServiceName(serviceName)))
	if err == nil {
		// The environment wins over the name the program gives.
		res, err = resource.Merge(res, envResource(ctx))
	}
	if err != nil && !errors.Is(err, resource.ErrPartialResource) && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, nil, fmt.Errorf("%w: sluiceotel: resource: %w", sluice.ErrInvalidConfig, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// envResource is the resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// describe.
func envResource(ctx context.Context) *resource.Resource {
	r, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return resource.Empty()
	}
	return r
}
