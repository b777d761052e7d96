package redisstream

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/tlsfail"
)

var (
	// ErrAuthentication matches the error of a constructor whose login the
	// server refused (WRONGPASS, or NOAUTH when a password is required):
	// a wrong user name or password (see [WithCredentials]). Retrying does
	// not help; the credentials must be fixed.
	ErrAuthentication = errors.New("redisstream: authentication failed")

	// ErrTLS matches the error of a constructor that refused the server's
	// certificate: signed by a CA that the [WithTLS] configuration does not
	// trust, issued for another host name, or expired. The underlying
	// crypto/x509 error is wrapped too.
	ErrTLS = errors.New("redisstream: TLS handshake failed")

	// ErrAccessDenied matches an error for a command the server's ACLs
	// refuse to the user (NOPERM): a command it may not run, or a key
	// outside its key patterns. A write refused this way, of an output or
	// of a dead letter, is also [sluice.Permanent] and [sluice.Fatal]: the
	// pipeline stops with the entry unacknowledged rather than dead-letter
	// it.
	ErrAccessDenied = errors.New("redisstream: access denied")
)

// classifySecurity marks err when it is a refusal that no retry can fix: a
// refused login, a refused certificate or a command the ACLs deny; refused
// reports whether it was one. Other errors are returned as they are.
func classifySecurity(err error) (_ error, refused bool) {
	switch {
	case err == nil:
		return nil, false
	case tlsfail.NotTLS(err):
		return fmt.Errorf("%w: the server does not speak TLS on this port (check the address, or turn TLS off): %w", ErrTLS, err), true
	case redis.HasErrorPrefix(err, "WRONGPASS") || redis.HasErrorPrefix(err, "NOAUTH"):
		return fmt.Errorf("%w (check the user and the password): %w", ErrAuthentication, err), true
	case tlsfail.Certificate(err):
		return fmt.Errorf("%w: the server's certificate was refused (check the CA file and the server address): %w", ErrTLS, err), true
	case redis.HasErrorPrefix(err, "NOPERM"):
		return fmt.Errorf("%w (check the user's ACL: its commands and key patterns): %w", ErrAccessDenied, err), true
	}
	return err, false
}

// classified is err, marked by [classifySecurity] if it is a refusal.
func classified(err error) error {
	err, _ = classifySecurity(err)
	return err
}

// writeError is the error of one refused XADD to stream: permanent and
// fatal when the ACLs refuse it.
func writeError(stream string, err error) error {
	err = fmt.Errorf("redisstream: XADD to %q: %w", stream, classified(err))
	if errors.Is(err, ErrAccessDenied) {
		return sluice.Permanent(sluice.Fatal(err))
	}
	return err
}
