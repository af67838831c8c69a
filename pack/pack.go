package pack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Defaults of packing.
const (
	DefaultPackItems    = 200
	DefaultPackBytes    = 8 << 20 // well under n8n's 16 MiB body limit
	DefaultPackInFlight = 2
)

// Options cut a batch into packs: many items per n8n execution.
type Options struct {
	// MaxItems per pack (default DefaultPackItems).
	MaxItems int
	// MaxBytes of a pack's encoded body (default DefaultPackBytes). n8n
	// refuses bodies over 16 MiB with a misleading 500.
	MaxBytes int
	// InFlight is the number of packs sent at once (default 2: more only
	// adds latency, n8n runs one execution mostly on one event loop).
	InFlight int
}

// ErrAnswer matches a pack whose answer does not confirm its items:
// wrong length, a key out of place, or not a JSON array of item results.
// Its error has code invocation.CodeInvalidAnswer: the workflow may have
// run the items.
var ErrAnswer = errors.New("packed answer rejected")

func answerError(workflow string, items int, reason string) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeInvalidAnswer, Workflow: workflow,
		Message: fmt.Sprintf("packed answer for %d items rejected: %s", items, reason), Err: ErrAnswer}
}

// ItemFailed returns the error of one item that the packed workflow
// reported failed ({key, ok: false, error}): code
// invocation.CodeWorkflowFailed, the item's key and execution.
func ItemFailed(workflow, key, message, executionID string) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeWorkflowFailed, Workflow: workflow, Key: key, ExecutionID: executionID,
		Message: fmt.Sprintf("item %q failed in execution %s: %s", key, executionID, message)}
}

// Answer is one item result of a packed answer: {key, ok, result} or
// {key, ok: false, error}.
type Answer struct {
	Key    *string         `json:"key"`
	OK     *bool           `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  any             `json:"error"`
}

// Message returns the error of a failed item as text.
func (a *Answer) Message() string {
	if s, ok := a.Error.(string); ok {
		return s
	}
	return fmt.Sprint(a.Error)
}

// Item is one item of a pack: its key and its encoded entry
// {"key": ..., "params": ...}.
type Item struct {
	Key   string
	Entry []byte
}

// Body returns the body of a pack of items, {"items": [entries...]}, and
// the pack's idempotency key, derived from the items' keys: the same
// items make the same pack key.
func Body(items []Item) (body []byte, key string) {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	keys := sha256.New()
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it.Entry)
		keys.Write([]byte(it.Key))
		keys.Write([]byte{0})
	}
	b.WriteString(`]}`)
	return b.Bytes(), "pack-" + hex.EncodeToString(keys.Sum(nil))[:32]
}

// Fill sets the defaults of the fields left zero.
func (p *Options) Fill() {
	if p.MaxItems <= 0 {
		p.MaxItems = DefaultPackItems
	}
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultPackBytes
	}
	if p.InFlight <= 0 {
		p.InFlight = DefaultPackInFlight
	}
}

// Check validates a packed answer: an array of the pack's length, each
// element with its own key in its position and an ok flag.
func Check(workflow string, items []Item, out json.RawMessage) ([]Answer, error) {
	pk := items
	var answers []Answer
	if err := json.Unmarshal(out, &answers); err != nil {
		return nil, answerError(workflow, len(pk), "not a JSON array of item results (is the webhook's response data set to all entries?)")
	}
	if len(answers) != len(pk) {
		return nil, answerError(workflow, len(pk), "answer has "+strconv.Itoa(len(answers))+" items")
	}
	for i, a := range answers {
		switch {
		case a.Key == nil || a.OK == nil:
			return nil, answerError(workflow, len(pk), fmt.Sprintf("item %d has no key or no ok", i))
		case *a.Key != pk[i].Key:
			return nil, answerError(workflow, len(pk), fmt.Sprintf("item %d has key %q, want %q (order changed)", i, *a.Key, pk[i].Key))
		}
	}
	return answers, nil
}
