package k8s_test

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// nonroot is the user the Dockerfile and the pods run as.
const nonroot = 65532

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
	buildOut  []byte
)

// staticBinary builds flashgate as the Dockerfile does (CGO_ENABLED=0,
// -trimpath) into a directory that any user may read, once per test binary.
func staticBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "flashgate-image-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "flashgate")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", buildBin, ".")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if buildOut, buildErr = cmd.CombinedOutput(); buildErr == nil {
			buildErr = os.Chmod(buildBin, 0o755) // whatever the umask: user 65532 runs it
		}
	})
	if buildErr != nil {
		t.Fatalf("go build as the Dockerfile does: %v\n%s", buildErr, buildOut)
	}
	return buildBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestImageStaticBinary: the image's base has no libc, so a binary that
// needs a dynamic loader or a shared library would not start in it.
func TestImageStaticBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux; this checks an ELF binary")
	}
	bin := staticBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a PT_INTERP program header: it needs a dynamic loader, which a distroless static or scratch base lacks", bin)
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a PT_DYNAMIC segment: it is dynamically linked", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	// -trimpath: no path of this machine is baked into the image.
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := filepath.Abs("..")
	if bytes.Contains(b, []byte(wd+"/")) {
		t.Errorf("%s contains the build directory %s: built without -trimpath", bin, wd)
	}
}

// TestImageEmbedsScriptsAndMigrations: the image holds only the binary, so
// the Lua scripts and the migrations must be inside it.
func TestImageEmbedsScriptsAndMigrations(t *testing.T) {
	b, err := os.ReadFile(staticBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, glob := range []string{"../lua/*.lua", "../sql/*.sql"} {
		files, err := filepath.Glob(glob)
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v (%d files)", glob, err, len(files))
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, src) {
				t.Errorf("the binary does not hold %s: it would be missing from the image", f)
			}
		}
	}
}

// TestImageRunsAsNonRootInEmptyDir runs the binary as the image's user in
// an empty working directory with an empty environment, as the image and a
// pod with a read-only root filesystem would.
func TestImageRunsAsNonRootInEmptyDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to the non-root user 65532; as a non-root user this is the same as any run")
	}
	bin := staticBinary(t)
	empty, err := os.MkdirTemp("", "flashgate-empty-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(empty)
	if err := os.Chmod(empty, 0o555); err != nil { // readable, not writable: like a read-only root
		t.Fatal(err)
	}
	for _, args := range [][]string{{"help"}, {"gateway", "--help"}, {"worker", "--help"}, {"ws", "--help"}, {"migrate", "--help"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = empty
		cmd.Env = []string{}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("flashgate %s as uid %d in an empty directory: %v\n%s", strings.Join(args, " "), nonroot, err, out)
		}
		if !strings.Contains(string(out), "Usage: flashgate") {
			t.Errorf("flashgate %s printed no usage:\n%s", strings.Join(args, " "), out)
		}
	}
	// Outside dev mode without secrets a service must refuse to start (and
	// say why), not crash on a missing file or directory.
	cmd := exec.Command(bin, "gateway")
	cmd.Dir = empty
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FLASHGATE_TOKEN_SECRET") {
		t.Errorf("flashgate gateway without secrets: want a refusal naming FLASHGATE_TOKEN_SECRET, got %v:\n%s", err, out)
	}
}
