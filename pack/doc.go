// Package pack is item packing: many batch items per n8n execution, for
// a packed workflow (templates/packed-items.json) that answers an array
// of item results in order. It encodes a pack's body and validates its
// answer; the manager's batch engine (invoker.WithPacking) cuts a batch
// into packs, splits a pack that fails as a whole and maps the answers
// back to the items.
//
// Delivery is at least once per item: a pack that fails as a whole is
// split and sent again, and the items' keys travel in the body, where
// only the workflow can deduplicate them.
package pack
