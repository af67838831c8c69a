package policy

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// DefaultStartupGrace is how long after n8n last looked unavailable a 404
// "webhook not registered" counts as transient.
const DefaultStartupGrace = 60 * time.Second

// Grace turns n8n's 404 "webhook not registered" into a transient error
// for a while after n8n looked unavailable (a connection failure, a
// 502/503/504, a starting n8n's HTML 404): a restarting n8n registers its
// webhooks a moment after it answers again. Outside that window the 404
// stays permanent. Safe for concurrent use.
type Grace struct {
	window time.Duration
	at     atomic.Int64 // unix ns n8n last looked unavailable
}

// NewGrace returns a Grace of the given window (0 turns it off).
func NewGrace(window time.Duration) *Grace { return &Grace{window: window} }

// Adjust records what err says of n8n's availability and returns the
// class c, changed to Transient for a "not registered" answer inside the
// window.
func (g *Grace) Adjust(err error, c invocation.Class) invocation.Class {
	var he *invocation.HTTPError
	isHTTP := errors.As(err, &he)
	switch {
	case c == invocation.Transient && (!isHTTP || he.Starting || he.StatusCode == http.StatusNotFound || he.StatusCode >= 502):
		g.at.Store(time.Now().UnixNano())
	case isHTTP && he.NotRegistered && c == invocation.Permanent && g.window > 0:
		if at := g.at.Load(); at != 0 && time.Since(time.Unix(0, at)) < g.window {
			return invocation.Transient // n8n is still registering its webhooks
		}
	}
	return c
}
