package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/openai"
)

// Option configures [Main].
type Option func(*options)

type options struct {
	version string
	exts    []Extension
}

// WithVersion sets the version the service reports (-version, the start
// log line). Without it, the module version and VCS revision the Go
// toolchain recorded are used.
func WithVersion(v string) Option {
	return func(o *options) { o.version = v }
}

// WithExtension adds ext to the service. Extensions run in order, once
// the configuration is parsed and before anything connects.
func WithExtension(ext Extension) Option {
	return func(o *options) {
		if ext != nil {
			o.exts = append(o.exts, ext)
		}
	}
}

// Extension adds to the service what its own flags do not: options for the
// pipeline and the enricher, and what to do at exit. An error stops the
// service with exit status 78 (a bad configuration).
type Extension func(ctx context.Context, info Info) (Extra, error)

// Info is what an [Extension] may want to know about the service.
type Info struct {
	// Source is "kafka" or "redis"; Group the consumer group; Input,
	// Output and DeadLetter the topics or streams.
	Source, Group, Input, Output, DeadLetter string
	// Log is the service's logger.
	Log *slog.Logger
}

// Extra is what an [Extension] adds.
type Extra struct {
	// Pipeline and Enricher are appended to the service's own options.
	Pipeline []sluice.Option
	Enricher []openai.Option
	// Close, when set, runs after the pipeline has stopped, for example
	// to flush spans.
	Close func(context.Context) error
}

// extend runs the extensions and gathers what they add.
func (o *options) extend(ctx context.Context, cfg *config, log *slog.Logger) (*extras, error) {
	info := Info{Source: cfg.Source, Group: cfg.Group, Input: cfg.Input, Output: cfg.Output, DeadLetter: cfg.DeadLetter, Log: log}
	all := &extras{}
	for _, ext := range o.exts {
		x, err := ext(ctx, info)
		if err != nil {
			all.close(log)
			return nil, err
		}
		all.Pipeline = append(all.Pipeline, x.Pipeline...)
		all.Enricher = append(all.Enricher, x.Enricher...)
		if x.Close != nil {
			all.closers = append(all.closers, x.Close)
		}
	}
	return all, nil
}

// extras is every extension's Extra together.
type extras struct {
	Extra
	closers []func(context.Context) error
}

// close runs the extensions' Close functions, last first, each with a
// second to finish.
func (x *extras) close(log *slog.Logger) {
	for i := len(x.closers) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), extensionCloseTimeout)
		if err := x.closers[i](ctx); err != nil {
			log.Warn("closing an extension", "err", err)
		}
		cancel()
	}
}

// extensionCloseTimeout bounds each extension's Close, which runs last in
// a stop: the stop budget leaves it about a second.
const extensionCloseTimeout = time.Second
