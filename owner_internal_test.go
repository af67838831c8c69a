package invoker

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestDeadOwner: only a process of this machine (host, boot and pid
// namespace) that no longer runs is dead; the hostname and the pid
// namespace's inode are the same on many hosts, so an owner of another
// boot is never dead (issue 25, point 10: two hosts with one hostname
// took each other's live leases).
func TestDeadOwner(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	ns, _ := os.Readlink("/proc/self/ns/pid")
	parent := os.Getppid()
	gone := 1 << 22 // above pid_max's default: no such process
	tests := []struct {
		name  string
		owner string
		dead  bool
	}{
		{"this machine, pid gone", fmt.Sprintf("%s:%d:%d/x", machine(), gone, 12345), true},
		{"this machine, pid reused by a later process", fmt.Sprintf("%s:%d:%d/x", machine(), parent, startTime(parent)+1), true},
		{"this machine, live process", fmt.Sprintf("%s:%d:%d/x", machine(), parent, startTime(parent)), false},
		{"this process", processOwner(), false},
		{"another boot with the same hostname and pid namespace inode", fmt.Sprintf("%s/another-boot/%s:%d:%d/x", host, ns, gone, 12345), false},
		{"another host", fmt.Sprintf("elsewhere/b/%s:%d:%d/x", ns, gone, 12345), false},
		{"unknown start time", fmt.Sprintf("%s:%d:0/x", machine(), gone), false},
		{"the old format", fmt.Sprintf("%s/%s:%d/x", host, ns, gone), false},
	}
	for _, tt := range tests {
		if got := deadOwner(tt.owner); got != tt.dead {
			t.Errorf("%s (%s): dead %v, want %v", tt.name, tt.owner, got, tt.dead)
		}
	}
	if a, b := processOwner(), processOwner(); a == b || !strings.HasPrefix(a, machine()+":") {
		t.Errorf("owners %q and %q", a, b)
	}
}
