package redisstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/sluicehq/sluice"
)

// replyError is an error reply of the server, as go-redis returns it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestClassifySecurity(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{replyError("WRONGPASS invalid username-password pair or user is disabled."), ErrAuthentication},
		{replyError("NOAUTH Authentication required."), ErrAuthentication},
		{fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), ErrTLS},
		{x509.HostnameError{Certificate: &x509.Certificate{}, Host: "127.0.0.1"}, ErrTLS},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ErrTLS},
		{replyError("NOPERM this user has no permissions to access one of the keys used as arguments"), ErrAccessDenied},
	}
	for _, c := range cases {
		got, refused := classifySecurity(c.err)
		if !refused || !errors.Is(got, c.want) || !errors.Is(got, c.err) {
			t.Errorf("classifySecurity(%v) = %v, %v; want %v wrapping it", c.err, got, refused, c.want)
		}
	}
	for _, err := range []error{replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), io.EOF, nil} {
		if got, refused := classifySecurity(err); refused || !errors.Is(got, err) {
			t.Errorf("classifySecurity(%v) = %v, %v; want it unchanged", err, got, refused)
		}
	}
	// A refused write is permanent only when the ACLs refused it.
	if err := writeError("dlq", replyError("NOPERM no")); !errors.Is(err, sluice.ErrPermanent) || !errors.Is(err, sluice.ErrFatal) || !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), `"dlq"`) {
		t.Errorf("writeError(NOPERM) = %v", err)
	}
	if err := writeError("dlq", replyError("WRONGTYPE no")); errors.Is(err, sluice.ErrPermanent) {
		t.Errorf("writeError(WRONGTYPE) = %v: permanent", err)
	}
}
