package policy

import (
	"fmt"
	"sync"
)

// Defaults of Budget: the AWS SDKs' standard retryer's capacity and
// refund, with cheaper retries (theirs cost 5 and 10), so that ~30% of
// attempts failing at random does not drain it (a first-try success puts
// back 1, a successful retry its cost), while a dead n8n empties it after
// about 160 retries.
const (
	DefaultBudgetCapacity = 500
	DefaultRetryCost      = 3
	DefaultTimeoutCost    = 5
	DefaultSuccessRefund  = 1
)

// Budget is a client-wide retry budget (a token bucket): every retry
// takes RetryCost tokens (TimeoutCost after a timeout), every success puts
// back what its retries took, or SuccessRefund for a first-try success.
// When the bucket is empty, retries are refused, so a dead n8n sees one
// attempt per call instead of a retry storm. Safe for concurrent use.
type Budget struct {
	mu       sync.Mutex
	capacity int
	tokens   int
	retry    int
	timeout  int
	refund   int
}

// BudgetConfig configures a Budget; zero values mean the defaults.
type BudgetConfig struct {
	Capacity      int
	RetryCost     int
	TimeoutCost   int
	SuccessRefund int
}

// NewBudget returns a full budget.
func NewBudget(c BudgetConfig) (*Budget, error) {
	if c.Capacity < 0 || c.RetryCost < 0 || c.TimeoutCost < 0 || c.SuccessRefund < 0 {
		return nil, fmt.Errorf("policy: budget values must not be negative: %+v", c)
	}
	b := &Budget{capacity: c.Capacity, retry: c.RetryCost, timeout: c.TimeoutCost, refund: c.SuccessRefund}
	if b.capacity == 0 {
		b.capacity = DefaultBudgetCapacity
	}
	if b.retry == 0 {
		b.retry = DefaultRetryCost
	}
	if b.timeout == 0 {
		b.timeout = DefaultTimeoutCost
	}
	if b.refund == 0 {
		b.refund = DefaultSuccessRefund
	}
	b.tokens = b.capacity
	return b, nil
}

// Acquire takes the cost of one retry (timeout says the failed attempt
// timed out) and returns it, or 0 and false when the budget is spent.
func (b *Budget) Acquire(timeout bool) (cost int, ok bool) {
	cost = b.retry
	if timeout {
		cost = b.timeout
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < cost {
		return 0, false
	}
	b.tokens -= cost
	return cost, true
}

// Success returns spent tokens after a successful invocation: what its
// retries took, or the success refund when it needed none.
func (b *Budget) Success(spent int) {
	if spent == 0 {
		spent = b.refund
	}
	b.mu.Lock()
	b.tokens = min(b.capacity, b.tokens+spent)
	b.mu.Unlock()
}

// Available returns the tokens left.
func (b *Budget) Available() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens
}
