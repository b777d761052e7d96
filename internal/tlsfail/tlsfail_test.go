package tlsfail

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name              string
		err               error
		notTLS, certIssue bool
	}{
		{"nil", nil, false, false},
		{"EOF", io.EOF, false, false},
		{"plain text reply", fmt.Errorf("dial: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), true, false},
		{"unknown CA", fmt.Errorf("x: %w", x509.UnknownAuthorityError{}), false, true},
		{"other host", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "wrong"}}, false, true},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, false, true},
		{"other", errors.New("connection reset by peer"), false, false},
	} {
		if got := NotTLS(tc.err); got != tc.notTLS {
			t.Errorf("%s: NotTLS = %v", tc.name, got)
		}
		if got := Certificate(tc.err); got != tc.certIssue {
			t.Errorf("%s: Certificate = %v", tc.name, got)
		}
	}
}
