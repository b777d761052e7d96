package sluiceotel_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sluicehq/sluice"
	sluiceotel "github.com/sluicehq/sluice/otel"
)

func clearEnv(t *testing.T) {
	for _, k := range []string{sluiceotel.EnvSDKDisabled, sluiceotel.EnvTracesExporter, sluiceotel.EnvProtocol,
		sluiceotel.EnvTracesProtocol, sluiceotel.EnvEndpoint, sluiceotel.EnvTracesEndpoint} {
		t.Setenv(k, "")
	}
}

func TestEnvConfigured(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{sluiceotel.EnvEndpoint: "http://127.0.0.1:4318"}, true},
		{map[string]string{sluiceotel.EnvTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{sluiceotel.EnvTracesExporter: "console"}, true},
		{map[string]string{sluiceotel.EnvTracesExporter: "none", sluiceotel.EnvEndpoint: "http://x:4318"}, false},
		{map[string]string{sluiceotel.EnvSDKDisabled: "true", sluiceotel.EnvEndpoint: "http://x:4318"}, false},
	} {
		clearEnv(t)
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		if got := sluiceotel.EnvConfigured(); got != c.want {
			t.Errorf("EnvConfigured() with %v = %v, want %v", c.env, got, c.want)
		}
	}
}

func TestNewTracerProviderRejectsWhatItCannotDo(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"grpc":     {sluiceotel.EnvProtocol: "grpc"},
		"exporter": {sluiceotel.EnvTracesExporter: "zipkin"},
	} {
		t.Run(name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			_, _, err := sluiceotel.NewTracerProvider(context.Background(), "svc", nil)
			if !errors.Is(err, sluice.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			for _, v := range env {
				if !strings.Contains(err.Error(), v) {
					t.Errorf("error %q does not name %q", err, v)
				}
			}
		})
	}
}

func TestNewTracerProviderConsoleAndNone(t *testing.T) {
	clearEnv(t)
	t.Setenv(sluiceotel.EnvTracesExporter, "none")
	tp, shutdown, err := sluiceotel.NewTracerProvider(context.Background(), "svc", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(noop.TracerProvider); !ok {
		t.Errorf("none gave %T, want the no-op provider", tp)
	}
	_ = shutdown(context.Background())

	t.Setenv(sluiceotel.EnvTracesExporter, "console")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	var buf bytes.Buffer
	tp, shutdown, err = sluiceotel.NewTracerProvider(context.Background(), "svc", &buf)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "hello")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"hello"`) || !strings.Contains(buf.String(), "from-env") {
		t.Errorf("console output lacks the span or the service name from OTEL_SERVICE_NAME:\n%s", buf.String())
	}
}

func TestNewRejectsNil(t *testing.T) {
	_, err := sluiceotel.New(sluiceotel.WithTracerProvider(nil), sluiceotel.WithPropagator(nil), sluiceotel.WithConsumerGroup(""))
	if !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, s := range []string{"WithTracerProvider(nil)", "WithPropagator(nil)", `WithConsumerGroup("")`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}
