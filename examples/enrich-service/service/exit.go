package service

import (
	"errors"

	"github.com/sluicehq/sluice"
)

// Exit statuses. They follow sysexits(3) where one fits. 2 is never one of
// ours: Go exits 2 on an unrecovered panic, and a crash must be restarted.
const (
	exitOK          = 0  // a graceful stop (SIGTERM or SIGINT, then the drain)
	exitFailure     = 1  // startup, the broker or the source failed: worth a restart
	exitUnavailable = 69 // EX_UNAVAILABLE: the model endpoint did not answer the preflight (down, unreachable, 5xx)
	exitRateLimited = 75 // EX_TEMPFAIL: rate limited longer than -max-rate-limit-duration without one success
	exitBreaker     = 76 // the breaker opened: -breaker events in a row failed with the same configuration error
	exitFatal       = 77 // EX_NOPERM: the model refused the API key (401, 403) or the quota is spent
	exitConfig      = 78 // EX_CONFIG: a bad flag, variable, credential or file
	exitPreflight   = 79 // the preflight found the model URL, the model name or a request parameter wrong
)

// exitHelp documents the exit statuses in -h.
const exitHelp = `
Exit status:
  0   graceful stop: SIGTERM or SIGINT, then the drain (a second signal exits at once)
  1   startup, the broker or the source failed (restarted by the systemd unit)
  2   never set by sluice-enrich: a Go panic (restarted)
  69  preflight: the model endpoint did not answer (down, unreachable, 5xx) within
      -preflight-wait (restarted)
  75  rate limited for longer than -max-rate-limit-duration without one success (restarted)
  76  breaker: -breaker events in a row failed with the same configuration error;
      the rest of the input is left unconsumed (not restarted: fix the setup)
  77  the model refused the API key (401/403) or the quota is spent (not restarted)
  78  invalid configuration: flags, variables, credentials or files (not restarted)
  79  preflight: the model URL, model name or a request parameter is wrong;
      nothing was consumed (not restarted: fix the setup, or -skip-preflight)
`

// runStatus maps the error Run returned to an exit status.
func runStatus(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, sluice.ErrFatal):
		return exitFatal
	case errors.Is(err, sluice.ErrRateLimited):
		return exitRateLimited
	case errors.Is(err, sluice.ErrMisconfigured):
		return exitBreaker
	default:
		return exitFailure
	}
}

// preflightStatus maps the preflight's error to an exit status.
func preflightStatus(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, sluice.ErrFatal):
		return exitFatal
	case errors.Is(err, sluice.ErrMisconfigured):
		return exitPreflight
	default:
		return exitUnavailable
	}
}
