// Package invocation is the vocabulary every layer of n8n-invoker shares:
// the Request a caller makes, the Result it gets, the Class of a failure
// (transient, permanent, unknown), the Outcome of one attempt on the wire
// (not sent, answered, accepted, ambiguous), the Transport seam that makes
// one attempt, and the common sentinel errors.
//
// It is a leaf: it imports nothing of the project, so the root package,
// the resilience pipeline and every transport (the webhook transport in
// httpinvoker, others to come) can all name these types without an import
// cycle.
package invocation
