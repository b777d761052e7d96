package service

import (
	"log/slog"
	"time"
)

// The parts of a stop that the flags do not set.
const (
	httpShutdownTimeout = 2 * time.Second // the health server finishes its requests
	closeTimeout        = 3 * time.Second // closing the broker connections, after everything was flushed
	// kubernetesGrace is Kubernetes' default terminationGracePeriodSeconds.
	kubernetesGrace = 30 * time.Second
)

// stopBudget is the longest a stop can take after SIGTERM: the drain, the
// flush of acks (offsets), the health server's shutdown and closing the
// connections. The systemd unit's TimeoutStopSec and a pod's
// terminationGracePeriodSeconds must be above it.
func (c *config) stopBudget() time.Duration {
	return c.DrainTimeout + c.FlushTimeout + httpShutdownTimeout + closeTimeout
}

// warnStopBudget logs the stop budget, and warns when it exceeds
// Kubernetes' default grace period.
func warnStopBudget(c *config, log *slog.Logger) {
	b := c.stopBudget()
	if b >= kubernetesGrace {
		log.Warn("a stop can take longer than Kubernetes' default grace period of 30s; raise terminationGracePeriodSeconds (and the unit's TimeoutStopSec) above it, or lower -drain-timeout and -flush-timeout",
			"stop_budget", b.String(), "drain_timeout", c.DrainTimeout.String(), "flush_timeout", c.FlushTimeout.String())
		return
	}
	log.Info("stop budget", "stop_budget", b.String(), "drain_timeout", c.DrainTimeout.String(), "flush_timeout", c.FlushTimeout.String())
}
