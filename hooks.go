package invoker

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/hooks"
)

// RegisterPlugin adds a plugin, called at every stage after the hooks
// already registered.
func (m *Manager) RegisterPlugin(p hooks.Plugin) error {
	if p == nil {
		return errors.New("invoker: nil plugin")
	}
	for _, st := range []hooks.Stage{hooks.StagePreExecution, hooks.StagePostExecution, hooks.StageError} {
		if err := m.RegisterHook(st, hooks.FromPlugin(p)); err != nil {
			return err
		}
	}
	return nil
}

// HookFactory makes a named hook for a manager; ref is where the
// configuration named it, for errors.
type HookFactory func(m *Manager, ref config.HookRef) (hooks.Hook, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]HookFactory{
		"logging_hook": func(m *Manager, _ config.HookRef) (hooks.Hook, error) { return hooks.Logging(m.log), nil },
		"metrics_hook": func(m *Manager, _ config.HookRef) (hooks.Hook, error) { return hooks.Metrics(m.tel.Meter()) },
		"cleanup_hook": func(m *Manager, ref config.HookRef) (hooks.Hook, error) {
			h, err := hooks.Cleanup(m.api, m.log)
			if err != nil {
				return nil, &config.Error{Pos: ref.Pos, Msg: err.Error()}
			}
			return h, nil
		},
		"notification_hook": func(m *Manager, ref config.HookRef) (hooks.Hook, error) {
			n := m.cfg.Hooks.Notification
			if n.URL.IsZero() {
				// The seed's YAML names the hook without a destination:
				// notify through the log rather than refuse to start.
				m.log.Warn("notification_hook has no hooks.notification.url: failures are only logged", "at", ref.Pos.String())
			}
			return hooks.Notification(hooks.NotificationOptions{URL: n.URL, Format: n.Format, Timeout: n.Timeout.D()}, m.log), nil
		},
	}
)

// RegisterNamedHook makes a hook available by name to the configuration's
// hooks lists (call it before FromConfig, e.g. in an init function). It
// fails for a name already taken.
func RegisterNamedHook(name string, f HookFactory) error {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[name]; ok {
		return fmt.Errorf("invoker: hook %q is already registered", name)
	}
	registry[name] = f
	return nil
}

func namedHook(name string) (HookFactory, []string, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	return f, slices.Sorted(maps.Keys(registry)), ok
}
