package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// TestMakeBuildStampsVersion runs `make build` (into a temporary
// directory) and checks that the binary's --version prints the version
// scripts/version.sh gives, not a development placeholder. The packages
// are in the build cache from the other tests: it costs a link.
func TestMakeBuildStampsVersion(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command(filepath.Join(root, "scripts", "version.sh")).Output()
	if err != nil {
		t.Fatalf("scripts/version.sh: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "n8n-invoker")
	mk := exec.Command("make", "-s", "-C", root, "build", "BIN="+bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VERSION=") { // the Makefile's own VERSION, not the environment's
			mk.Env = append(mk.Env, kv)
		}
	}
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("n8n-invoker --version: %v\n%s", err, out)
	}
	got := strings.TrimSpace(string(out))
	v := strings.TrimSpace(string(want))
	if v == "" || got != "n8n-invoker version "+v {
		t.Fatalf("n8n-invoker --version = %q, want %q", got, "n8n-invoker version "+v)
	}
	if strings.Contains(got, "devel") {
		t.Fatalf("n8n-invoker --version = %q: not stamped", got)
	}
}

// TestReleaseIsTheChangelogs checks that release, the version of an
// unstamped build, is the CHANGELOG's latest version heading.
func TestReleaseIsTheChangelogs(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^## (?:Unreleased \()?v?(\d+\.\d+\.\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("CHANGELOG.md has no version heading")
	}
	if string(m[1]) != release {
		t.Fatalf("release = %q, but the CHANGELOG's latest version is %s: update release in cli.go", release, m[1])
	}
}

func TestVersionOf(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"module version", debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, "v0.4.0"},
		{"no build information", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, release + "-dev"},
		{"vcs revision", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "80a9cb7d1e2f3a4b5c6d"}}}, release + "-dev+80a9cb7d1e2f"},
		{"dirty", debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "80a9cb7"}, {Key: "vcs.modified", Value: "true"}}}, release + "-dev+80a9cb7-dirty"},
	} {
		if got := versionOf(&c.bi); got != c.want {
			t.Errorf("%s: versionOf = %q, want %q", c.name, got, c.want)
		}
	}
}
