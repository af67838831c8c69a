// Package config loads the n8n-invoker YAML configuration.
//
// The schema is the one of the design document, plus a workflows section
// that maps a name to its n8n webhook:
//
//	n8n:
//	  base_url: "https://n8n.example.com"   # required, http or https
//	  api_key: "${N8N_API_KEY}"             # optional for webhooks
//	  timeout: 30                           # seconds per attempt, or "30s"; default 30
//	invokers:
//	  http:
//	    max_retries: 3          # retries after the first attempt; default 3
//	    backoff_factor: 2.0     # delay before retry n: factor * 2^(n-1) s, full jitter; default 2.0
//	    pool_connections: 10    # hosts kept in the idle pool; default 10
//	    pool_maxsize: 20        # idle connections kept per host; default 20
//	    max_response_bytes: 16777216  # response body limit; default 16 MiB
//	tracing:
//	  enabled: true             # default false
//	  backend: "opentelemetry"  # opentelemetry or none; default opentelemetry
//	  sample_rate: 1.0          # 0..1; default 1.0
//	hooks:
//	  pre_execution: ["logging_hook"]
//	  post_execution: []
//	  error: []
//	workflows:
//	  user-onboarding:
//	    path: user-onboarding     # the webhook node's path
//	    method: POST              # default POST
//	    response_mode: lastNode   # onReceived, lastNode (default) or responseNode
//	    timeout: 60               # optional, overrides n8n.timeout
//	    auth:
//	      type: header            # none (default), header or basic
//	      name: X-Api-Key
//	      value: "${ONBOARDING_TOKEN}"
//	      # type: basic uses username and password
//
// Values may use ${VAR} and ${VAR:-default}; $${ is a literal "${". An
// unset variable without a default, an unknown key, a value of the wrong
// type or an invalid value is an *Error that names the file, line and
// field. The API key and auth secrets are Secret values that print
// REDACTED.
package config
