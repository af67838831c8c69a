// Package redis is n8n-invoker's fleet-wide rate limit toward n8n on
// Redis (go-redis v9): every process of a fleet draws its attempts from
// one budget, kept atomically in Redis by a short Lua script (GCRA on
// Redis's own clock, so that the processes' clocks need not agree), and
// a 429 with Retry-After that one process sees pauses them all.
//
//	lim, err := redis.NewLimiter(redis.Options{Client: rdb, RequestsPerSecond: 20, FallbackPerProcess: 5})
//	m, err := invoker.FromConfig(path, invoker.WithRateLimiter(lim))
//
// When Redis cannot be reached (each call to it is bounded by
// Options.Timeout) the limiter falls back to a per-process limit with a
// warning: never to no limit, never to a stall. It lives in its own
// module, so that users who do not use it do not download go-redis.
//
// Why a script of our own and not redis_rate (v10): redis_rate's last
// release is years old, it reads the limit per call from the caller (no
// shared pause), and it has no notion of a fallback; the GCRA here is a
// dozen lines of Lua with the pause key next to it.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// DefaultKey prefixes the limiter's keys in Redis.
const DefaultKey = "n8n-invoker:rate"

// DefaultTimeout bounds each call to Redis.
const DefaultTimeout = 200 * time.Millisecond

// Options configure a Limiter.
type Options struct {
	// Client is the Redis client (required): a *goredis.Client,
	// *goredis.ClusterClient or any goredis.UniversalClient.
	Client goredis.UniversalClient
	// Key prefixes the keys ("" means DefaultKey); processes that share
	// a limit share a key.
	Key string
	// RequestsPerSecond is the fleet's rate toward n8n (required).
	RequestsPerSecond float64
	// Burst is how many requests may go at once above the rate (0 means
	// max(1, RequestsPerSecond)).
	Burst int
	// FallbackPerProcess is each process's own rate while Redis cannot
	// be reached (required: the fleet's rate divided by its size is a
	// good value).
	FallbackPerProcess float64
	// Timeout bounds each call to Redis (0 means DefaultTimeout).
	Timeout time.Duration
	// Logger receives the warnings (falling back, back on Redis); nil
	// discards them.
	Logger *slog.Logger
	// MaxPause caps the fleet's pause after a 429, and so the pause key's
	// lifetime (0 means policy.DefaultMaxRetryAfter): one Retry-After of
	// a day (a WAF's) pauses the fleet for MaxPause, not a day. Give it
	// the retry policy's max_retry_after.
	MaxPause time.Duration
}

// Limiter is a pipeline stage (pipeline.AttemptStage) that paces attempts
// by a limit in Redis. Safe for concurrent use.
type Limiter struct {
	rdb      goredis.UniversalClient
	keys     []string
	interval time.Duration // between two requests at the rate
	burst    time.Duration // tolerance: burst-1 intervals
	timeout  time.Duration
	maxPause time.Duration
	fallback *policy.RateLimiter
	log      *slog.Logger

	mu       sync.Mutex
	degraded bool      // on the fallback since the last Redis failure
	warned   time.Time // last warning
}

// NewLimiter validates o and returns a limiter. It does not contact
// Redis: a fleet starts while Redis is down (on the fallback).
func NewLimiter(o Options) (*Limiter, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("redis limiter: no client")
	case !(o.RequestsPerSecond > 0) || math.IsInf(o.RequestsPerSecond, 0):
		return nil, fmt.Errorf("redis limiter: requests_per_second must be positive, got %v", o.RequestsPerSecond)
	case !(o.FallbackPerProcess > 0) || math.IsInf(o.FallbackPerProcess, 0):
		return nil, fmt.Errorf("redis limiter: the per-process fallback rate must be positive, got %v (never no limit)", o.FallbackPerProcess)
	case o.Burst < 0 || o.Timeout < 0 || o.MaxPause < 0:
		return nil, errors.New("redis limiter: burst, timeout and max pause must not be negative")
	}
	if o.Key == "" {
		o.Key = DefaultKey
	}
	if o.Burst == 0 {
		o.Burst = max(1, int(o.RequestsPerSecond))
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxPause == 0 {
		o.MaxPause = policy.DefaultMaxRetryAfter
	}
	fb, err := policy.NewRateLimiter(o.FallbackPerProcess, 0, policy.WithMaxPause(o.MaxPause))
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := time.Duration(float64(time.Second) / o.RequestsPerSecond)
	return &Limiter{
		rdb:      o.Client,
		keys:     []string{o.Key + ":tat", o.Key + ":pause"},
		interval: interval,
		burst:    time.Duration(o.Burst-1) * interval,
		timeout:  o.Timeout,
		maxPause: o.MaxPause,
		fallback: fb,
		log:      log,
	}, nil
}

// reserve takes the next slot of the shared rate: it returns how long to
// wait before sending (0: now). While a 429's pause is on it takes no slot
// and returns the pause left, with paused true. Times are microseconds of
// Redis's clock.
var reserve = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return {1, pause - now} end
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new = tat + interval
redis.call('SET', KEYS[1], new, 'PX', math.ceil((new - now) / 1000) + 1000)
return {0, wait}
`)

// pauseLeft returns how many microseconds of a 429's pause are left.
var pauseLeft = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > now then return pause - now end
return 0
`)

// pauseAll sets the fleet's pause to now + ARGV[1] microseconds unless a
// later one is set.
var pauseAll = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > cur then redis.call('SET', KEYS[1], until_, 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000) end
return until_
`)

// Wait blocks until an attempt may start: its slot in the fleet's rate,
// after any pause a 429 set; on the per-process fallback while Redis
// cannot be reached. It returns ctx's error when ctx ends first.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		wait, paused, err := l.reserve(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.degrade(err)
			return l.fallback.Wait(ctx)
		}
		l.recover()
		if err := invocation.Sleep(ctx, wait); err != nil {
			return err
		}
		if paused {
			continue // the pause is over: take a slot
		}
		if wait == 0 {
			return nil // the slot was free now, and no pause was on
		}
		// A 429 elsewhere may have paused the fleet while this call waited
		// for its slot: a slot reserved before the pause is not used in it.
		left, err := l.pauseLeft(ctx)
		if err != nil || left == 0 {
			return nil
		}
		if err := invocation.Sleep(ctx, left); err != nil {
			return err
		}
	}
}

func (l *Limiter) pauseLeft(ctx context.Context) (time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	us, err := pauseLeft.Run(rctx, l.rdb, l.keys[1:]).Int64()
	return time.Duration(us) * time.Microsecond, err
}

func (l *Limiter) reserve(ctx context.Context) (time.Duration, bool, error) {
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	v, err := reserve.Run(rctx, l.rdb, l.keys, l.interval.Microseconds(), l.burst.Microseconds()).Int64Slice()
	if err != nil {
		return 0, false, err
	}
	if len(v) != 2 {
		return 0, false, fmt.Errorf("redis limiter: unexpected answer %v", v)
	}
	return time.Duration(v[1]) * time.Microsecond, v[0] == 1, nil
}

// Throttled records a 429: every process of the fleet pauses for
// retryAfter (when positive; at most Options.MaxPause); this process's
// fallback slows down too.
func (l *Limiter) Throttled(ctx context.Context, retryAfter time.Duration) {
	retryAfter = min(retryAfter, l.maxPause)
	l.fallback.Throttled(retryAfter)
	if retryAfter <= 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	if err := pauseAll.Run(rctx, l.rdb, l.keys[1:], retryAfter.Microseconds()).Err(); err != nil {
		l.degrade(err)
	}
}

func (l *Limiter) degrade(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.degraded || time.Since(l.warned) > time.Minute {
		l.log.Warn("rate limit: Redis cannot be reached; pacing this process alone at its fallback rate",
			"fallback_per_second", strconv.FormatFloat(l.fallback.Limit(), 'f', -1, 64), "error", err.Error())
		l.warned = time.Now()
	}
	l.degraded = true
}

func (l *Limiter) recover() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.degraded {
		l.degraded = false
		l.log.Warn("rate limit: Redis is back; pacing by the fleet's shared limit again")
	}
}

// Degraded reports whether the limiter is on its per-process fallback
// (Redis could not be reached at its last use).
func (l *Limiter) Degraded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.degraded
}

// Attempt is the rate-limit stage: it waits for a slot, and on a 429
// with Retry-After pauses the whole fleet.
func (l *Limiter) Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	if err := l.Wait(ctx); err != nil {
		return nil, err
	}
	res, err := next(ctx, a)
	var he *invocation.HTTPError
	switch {
	case err == nil:
		l.fallback.Succeeded()
	case errors.As(err, &he) && he.StatusCode == 429:
		l.Throttled(ctx, he.RetryAfter)
	}
	return res, err
}
