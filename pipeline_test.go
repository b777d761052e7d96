package sluice_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

func TestNewValidatesOptions(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	sink := sluicetest.NewSink()
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	_, err := sluice.New(src, enr, sink, sluice.WithConcurrency(0), sluice.WithRetries(-1),
		sluice.WithBackoff(time.Second, time.Millisecond), sluice.WithEnrichBatch(4))
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
	for _, want := range []string{"WithConcurrency(0)", "WithRetries(-1)", "WithBackoff(1s, 1ms)", "BatchEnricher"} {
		assert.Contains(t, err.Error(), want)
	}
	noDLQ := sluice.SinkFunc(func(context.Context, []*sluice.Message) error { return nil })
	_, err = sluice.New(src, enr, noDLQ)
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "WithDeadLetter")
	_, err = sluice.New(nil, nil, nil)
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
}

func TestRunTwice(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.End()
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	p, err := sluice.New(src, enr, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	require.Error(t, p.Run(within(t)))
}

func TestFetchErrorEndsRun(t *testing.T) {
	boom := errors.New("group coordinator gone")
	src := failingSource{sluicetest.NewSource("in", 1), boom}
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	p, err := sluice.New(src, enr, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	err = p.Run(within(t))
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "sluice: fetch:")
}

type failingSource struct {
	*sluicetest.Source
	err error
}

func (f failingSource) Fetch(context.Context, int) ([]*sluice.Message, error) { return nil, f.err }
