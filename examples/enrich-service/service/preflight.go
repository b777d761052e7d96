package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/openai"
)

// preflight checks the model endpoint before anything is consumed. A wrong
// setup (a refused key, a wrong URL, model or parameter) fails at once; an
// endpoint that does not answer (down, still starting, 5xx) is asked again,
// with a backoff from 1s to 10s, for up to wait, so that a model server
// started alongside the service does not cost a failed start.
func preflight(ctx context.Context, enr *openai.Enricher, wait time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(wait)
	backoff := time.Second
	for {
		err := enr.Check(ctx)
		if err == nil || errors.Is(err, sluice.ErrFatal) || errors.Is(err, sluice.ErrMisconfigured) || ctx.Err() != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		d := min(backoff, left)
		log.Warn("preflight: the model endpoint does not answer; asking again", "in", d.String(), "gives_up_in", left.Round(time.Second).String(), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
