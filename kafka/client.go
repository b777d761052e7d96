package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/internal/tlsfail"
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

	// ErrAuthentication matches the error of a constructor whose SASL
	// login the brokers refused: a wrong user name or password, or a
	// mechanism the listener does not offer (see [WithSASL]). Retrying
	// does not help; the credentials must be fixed.
	ErrAuthentication = errors.New("kafka: authentication failed")

	// ErrTLS matches the error of a constructor that refused the brokers'
	// certificate: signed by a CA that the [WithTLS] configuration does not
	// trust, issued for another host name, or expired. The underlying
	// crypto/x509 error (x509.UnknownAuthorityError, x509.HostnameError,
	// x509.CertificateInvalidError) is wrapped too.
	ErrTLS = errors.New("kafka: TLS handshake failed")

	// ErrAccessDenied matches an error for an operation the brokers'
	// authorizer refused to the authenticated user: no ACL to read or
	// describe a topic, to join or commit for a group, or to write a topic.
	// A write refused this way, of an output or of a dead letter, is also
	// [sluice.Permanent] and [sluice.Fatal]: the pipeline stops with the
	// event unacked rather than dead-letter it. The sarama error
	// (sarama.ErrTopicAuthorizationFailed, ...) is wrapped too.
	ErrAccessDenied = errors.New("kafka: access denied")
)

// classifyConnect marks errors of a connection attempt that no retry can
// fix: refused credentials, a refused certificate, a refused operation. ok
// reports whether err was one of them.
func classifyConnect(err error) (_ error, ok bool) {
	switch {
	case err == nil:
		return nil, false
	case tlsfail.NotTLS(err):
		return fmt.Errorf("%w: the broker does not speak TLS on this port (check the address, or turn TLS off): %w", ErrTLS, err), true
	case errors.Is(err, sarama.ErrSASLAuthenticationFailed):
		return fmt.Errorf("%w (check the SASL user, password and mechanism): %w", ErrAuthentication, err), true
	case tlsfail.Certificate(err):
		return fmt.Errorf("%w: the brokers' certificate was refused (check the CA file and the broker address): %w", ErrTLS, err), true
	case deniedError(err):
		return fmt.Errorf("%w: %w", ErrAccessDenied, err), true
	}
	return err, false
}

// deniedError reports whether err is an authorizer's refusal.
func deniedError(err error) bool {
	return errors.Is(err, sarama.ErrTopicAuthorizationFailed) || errors.Is(err, sarama.ErrGroupAuthorizationFailed) ||
		errors.Is(err, sarama.ErrClusterAuthorizationFailed) || errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed)
}

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
			if err, ok := classifyConnect(r.err); ok {
				return nil, fmt.Errorf("kafka: connect to %v: %w", brokers, err)
			}
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
