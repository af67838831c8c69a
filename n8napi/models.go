package n8napi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// ID is an n8n id: a string, though some versions send numbers.
type ID string

// UnmarshalJSON accepts a string, a number or null.
func (id *ID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*id = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*id = ID(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("id: want a string or number, got %s", b)
		}
		*id = ID(n.String())
	}
	return nil
}

// String returns the id.
func (id ID) String() string { return string(id) }

// Workflow is an n8n workflow.
type Workflow struct {
	ID          ID              `json:"id,omitempty"`
	Name        string          `json:"name"`
	Active      bool            `json:"active,omitempty"`
	Nodes       []Node          `json:"nodes"`
	Connections json.RawMessage `json:"connections"`
	Settings    json.RawMessage `json:"settings"`
	VersionID   string          `json:"versionId,omitempty"`
	// ActiveVersion is the published version that serves webhooks (n8n
	// 2.x); nil on 1.x, where Nodes are live when Active.
	ActiveVersion *WorkflowVersion `json:"activeVersion,omitempty"`
	Tags          []Tag            `json:"tags,omitempty"`
	CreatedAt     *time.Time       `json:"createdAt,omitempty"`
	UpdatedAt     *time.Time       `json:"updatedAt,omitempty"`
}

// LiveNodes returns the nodes that serve the workflow's webhooks: those
// of the active version when there is one.
func (w *Workflow) LiveNodes() []Node {
	if w.ActiveVersion != nil && len(w.ActiveVersion.Nodes) > 0 {
		return w.ActiveVersion.Nodes
	}
	return w.Nodes
}

// WorkflowVersion is a published version of a workflow.
type WorkflowVersion struct {
	VersionID string `json:"versionId,omitempty"`
	Nodes     []Node `json:"nodes"`
}

// Node is a workflow node.
type Node struct {
	ID          string                   `json:"id,omitempty"`
	Name        string                   `json:"name"`
	Type        string                   `json:"type"`
	TypeVersion float64                  `json:"typeVersion"`
	Position    []float64                `json:"position"`
	Parameters  map[string]any           `json:"parameters"`
	WebhookID   string                   `json:"webhookId,omitempty"`
	Credentials map[string]CredentialRef `json:"credentials,omitempty"`
	Disabled    bool                     `json:"disabled,omitempty"`
}

// CredentialRef names a credential a node uses.
type CredentialRef struct {
	ID   ID     `json:"id"`
	Name string `json:"name"`
}

// Execution is one run of a workflow.
type Execution struct {
	ID             ID             `json:"id"`
	Finished       bool           `json:"finished"`
	Mode           string         `json:"mode"`
	RetryOf        ID             `json:"retryOf,omitempty"`
	RetrySuccessID ID             `json:"retrySuccessId,omitempty"`
	Status         string         `json:"status"`
	StartedAt      *time.Time     `json:"startedAt,omitempty"`
	StoppedAt      *time.Time     `json:"stoppedAt,omitempty"`
	WorkflowID     ID             `json:"workflowId"`
	WaitTill       *time.Time     `json:"waitTill,omitempty"`
	Data           *ExecutionData `json:"data,omitempty"`
	// WorkflowData is the workflow as it ran (with includeData): it tells
	// which node is the trigger.
	WorkflowData *Workflow `json:"workflowData,omitempty"`
}

// Execution statuses.
const (
	StatusCanceled = "canceled"
	StatusCrashed  = "crashed"
	StatusError    = "error"
	StatusNew      = "new"
	StatusRunning  = "running"
	StatusSuccess  = "success"
	StatusUnknown  = "unknown"
	StatusWaiting  = "waiting"
)

// Terminal reports whether the execution has ended: success, error,
// crashed or canceled.
func (e *Execution) Terminal() bool {
	switch e.Status {
	case StatusSuccess, StatusError, StatusCrashed, StatusCanceled:
		return true
	}
	return false
}

// ExecutionData is an execution's data (with includeData).
type ExecutionData struct {
	ResultData ResultData `json:"resultData"`
}

// ResultData holds the nodes' outputs and the error of a failed run.
type ResultData struct {
	// RunData maps a node name to its runs.
	RunData          map[string][]NodeRun `json:"runData"`
	LastNodeExecuted string               `json:"lastNodeExecuted,omitempty"`
	Error            *ExecutionError      `json:"error,omitempty"`
	// PinData maps a node name to the items pinned on it: where a run
	// started through MCP keeps its trigger item (headers, query, body).
	PinData map[string][]Item `json:"pinData,omitempty"`
}

// NodeRun is one run of a node.
type NodeRun struct {
	StartTime     int64           `json:"startTime"`
	ExecutionTime int64           `json:"executionTime"`
	Data          *NodeRunData    `json:"data,omitempty"`
	Error         *ExecutionError `json:"error,omitempty"`
}

// NodeRunData holds a node run's output items per connection type.
type NodeRunData struct {
	Main [][]Item `json:"main"`
}

// Item is one output item of a node.
type Item struct {
	JSON map[string]any `json:"json"`
}

// ExecutionError is n8n's error of a failed run or node.
type ExecutionError struct {
	Message     string `json:"message"`
	Description string `json:"description,omitempty"`
	Name        string `json:"name,omitempty"`
	Node        *struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"node,omitempty"`
}

// NodeName returns the failing node's name, if known.
func (e *ExecutionError) NodeName() string {
	if e == nil || e.Node == nil {
		return ""
	}
	return e.Node.Name
}

// FirstItem returns the JSON of the first output item of node's first
// run, or nil.
func (d *ExecutionData) FirstItem(node string) map[string]any {
	if d == nil {
		return nil
	}
	runs := d.ResultData.RunData[node]
	if len(runs) == 0 || runs[0].Data == nil || len(runs[0].Data.Main) == 0 || len(runs[0].Data.Main[0]) == 0 {
		return nil
	}
	return runs[0].Data.Main[0][0].JSON
}

// LastOutput returns the first output item of the last node executed
// (of its last run, as LastItems), or nil.
func (d *ExecutionData) LastOutput() map[string]any {
	if items := d.LastItems(); len(items) > 0 {
		return items[0]
	}
	return nil
}

// LastItems returns the JSON of every output item of the last node
// executed (its last run, first output), nil when it has none.
func (d *ExecutionData) LastItems() []map[string]any {
	if d == nil {
		return nil
	}
	runs := d.ResultData.RunData[d.ResultData.LastNodeExecuted]
	if len(runs) == 0 {
		return nil
	}
	last := runs[len(runs)-1]
	if last.Data == nil || len(last.Data.Main) == 0 {
		return nil
	}
	items := make([]map[string]any, 0, len(last.Data.Main[0]))
	for _, it := range last.Data.Main[0] {
		items = append(items, it.JSON)
	}
	return items
}

// Credential is a credential to create.
type Credential struct {
	ID   ID             `json:"id,omitempty"`
	Name string         `json:"name"`
	Type string         `json:"type"`
	Data map[string]any `json:"data,omitempty"`
}

// Tag is a workflow tag.
type Tag struct {
	ID   ID     `json:"id,omitempty"`
	Name string `json:"name"`
}

// WebhookNodeType is the type of n8n's Webhook trigger node.
const WebhookNodeType = "n8n-nodes-base.webhook"
