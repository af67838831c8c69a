package invocation

import (
	"math"
	"strconv"
	"strings"
	"time"
)

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
	t, err := parseHTTPDate(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

// The three date forms HTTP allows (RFC 9110, section 5.6.7).
var httpDateLayouts = []string{
	"Mon, 02 Jan 2006 15:04:05 GMT",
	time.RFC850,
	time.ANSIC,
}

func parseHTTPDate(v string) (t time.Time, err error) {
	for _, layout := range httpDateLayouts {
		if t, err = time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return t, err
}
