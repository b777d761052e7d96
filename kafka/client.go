package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

var (
	// ErrUnreachable matches the error a constructor returns when no broker
	// answered within the connect timeout (see [WithConnectTimeout]).
	ErrUnreachable = errors.New("kafka: brokers unreachable")

	// ErrClosed matches the error of a call on a closed [Sink].
	ErrClosed = errors.New("kafka: closed")

	// ErrNotReady matches the error Ready returns before the component has
	// connected or, for a Source, joined its group.
	ErrNotReady = errors.New("kafka: not ready")

	// ErrClaimStuck matches the error Fetch returns when a revoked partition
	// could not be released in time (see [WithRevokeTimeout]); the source
	// has then stopped and must be closed and rebuilt.
	ErrClaimStuck = errors.New("kafka: revoked partition could not be released")
)

// newClient connects to brokers, giving up after timeout or when ctx ends.
// sarama's constructor does not take a context, so it runs on its own
// goroutine; a client it returns late is closed.
func newClient(ctx context.Context, brokers []string, sc *sarama.Config, timeout time.Duration) (sarama.Client, error) {
	type result struct {
		c   sarama.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := sarama.NewClient(brokers, sc)
		ch <- result{c, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	abandon := func() {
		go func() {
			if r := <-ch; r.c != nil {
				_ = r.c.Close()
			}
		}()
	}
	select {
	case r := <-ch:
		if r.err != nil {
			if errors.Is(r.err, sarama.ErrOutOfBrokers) {
				return nil, fmt.Errorf("%w: %v: %w", ErrUnreachable, brokers, r.err)
			}
			return nil, fmt.Errorf("kafka: connect to %v: %w", brokers, r.err)
		}
		return r.c, nil
	case <-t.C:
		abandon()
		return nil, fmt.Errorf("%w: %v: no answer within %s", ErrUnreachable, brokers, timeout)
	case <-ctx.Done():
		abandon()
		return nil, fmt.Errorf("kafka: connect to %v: %w", brokers, ctx.Err())
	}
}

// call runs fn, which may block on the network, and returns early if ctx
// ends first.
func call[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
