package telemetry_test

import (
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

// TestLabelsOfEveryCode: success, canceled (not a failure) or failure
// with the code's name as error.type.
func TestLabelsOfEveryCode(t *testing.T) {
	t.Parallel()
	for _, c := range invocation.Codes() {
		o, et := telemetry.OutcomeLabel(c), telemetry.ErrorType(c)
		switch c {
		case invocation.CodeOK:
			if o != "success" || et != "" {
				t.Errorf("%s: %s %q", c, o, et)
			}
		case invocation.CodeCanceled, invocation.CodeCanceledInFlight:
			if o != "canceled" || et != "" {
				t.Errorf("%s: %s %q", c, o, et)
			}
		default:
			if o != "failure" || et != c.String() {
				t.Errorf("%s: %s %q", c, o, et)
			}
		}
	}
}
