// Package tlsfail tells apart the TLS failures of a connection that no
// retry can fix, for the adapters and the service to classify alike.
package tlsfail

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// NotTLS reports whether err says that the peer answered a TLS handshake
// with something else: it does not speak TLS on that port.
func NotTLS(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh)
}

// Certificate reports whether err is a refusal of the peer's certificate:
// signed by an authority that is not trusted, issued for another host
// name, expired or otherwise invalid.
func Certificate(err error) bool {
	var (
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
		cv *tls.CertificateVerificationError
	)
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cv)
}
