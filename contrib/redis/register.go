package redis

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"

	"github.com/n8n-invoker/n8n-invoker/policy"
)

// Backend is the name this package registers under for the
// configuration's rate_limit.backend:
//
//	import _ "github.com/n8n-invoker/n8n-invoker/contrib/redis"
//
//	rate_limit: {backend: redis, url: "${N8N_INVOKER_REDIS_URL}", requests_per_second: 20, fallback_per_process: 5}
const Backend = "redis"

func init() {
	if err := policy.RegisterSharedLimit(Backend, open); err != nil {
		panic(err)
	}
}

// owned is a Limiter with the client it opened.
type owned struct {
	*Limiter
	rdb *goredis.Client
}

func (o owned) Close() error { return o.rdb.Close() }

func open(_ context.Context, o policy.SharedLimitOptions) (policy.SharedLimiter, error) {
	opt, err := goredis.ParseURL(o.URL.Reveal())
	if err != nil {
		// The URL may carry a password: not shown.
		return nil, errors.New("redis limiter: rate_limit.url is not a redis:// or rediss:// URL (its text is not shown: it may hold a password)")
	}
	rdb := goredis.NewClient(opt)
	l, err := NewLimiter(Options{Client: rdb, Key: o.Key, RequestsPerSecond: o.RequestsPerSecond, Burst: o.Burst,
		FallbackPerProcess: o.FallbackPerProcess, Logger: o.Logger, MaxPause: o.MaxPause})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return owned{Limiter: l, rdb: rdb}, nil
}
