package httpinvoker

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// backoff returns the un-jittered delay before retry n (n >= 1):
// factor * 2^(n-1) seconds, capped at max.
func backoff(factor float64, n int, max time.Duration) time.Duration {
	if factor <= 0 {
		return 0
	}
	secs := factor * math.Pow(2, float64(n-1))
	if secs >= max.Seconds() {
		return max
	}
	return time.Duration(secs * float64(time.Second))
}

// ParseRetryAfter reads a Retry-After value in either form: delay seconds
// ("120") or an HTTP date, relative to now. A date in the past gives 0.
// ok is false when the value is missing or malformed.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(math.MaxInt64/time.Second) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}
