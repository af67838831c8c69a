// Package config loads the n8n-invoker YAML configuration.
//
// A file names the n8n instance and maps workflow names to their webhooks;
// every other key has a default:
//
//	n8n:
//	  base_url: "https://n8n.example.com"   # required, http or https
//	  api_key: "${N8N_API_KEY}"             # optional for webhooks
//	dlq:
//	  enabled: true                         # the journal and dead letters
//	workflows:
//	  user-onboarding:
//	    path: user-onboarding     # the webhook node's path
//	    auth:
//	      type: header            # none, header, basic, hmac or jwt
//	      name: X-Api-Key
//	      value: "${ONBOARDING_TOKEN}"
//
// Default returns every default; the reference of every key, with its
// type, default and doc, is docs/configuration.md in the repository,
// generated from this package's types, their doc comments and Default
// (make docs; a test fails when it is stale).
//
// Values may use ${VAR} and ${VAR:-default}; $${ is a literal "${". An
// unset variable without a default, an unknown key, a value of the wrong
// type or an invalid value is an *Error that names the file, line and
// field. The API key and auth secrets are Secret values that print
// REDACTED.
package config
