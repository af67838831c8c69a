// Package hooks is the design's hooks and plugins layer: the Hook
// interface the manager calls around every execution (pre-execution, which
// may veto a call or change its parameters; post-execution; error), the
// Plugin interface that observes them, and the built-in hooks the
// configuration names (logging_hook, metrics_hook, cleanup_hook,
// notification_hook). Register them on a Manager with RegisterHook and
// RegisterPlugin, or by name in the configuration's hooks section.
package hooks
