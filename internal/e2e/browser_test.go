package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromiumPackage is the Debian package of the browser the web tests drive;
// scripts/test.sh installs it as it installs redis-server and mariadb-server.
const chromiumPackage = "chromium"

// browser is one headless Chromium with a profile of its own; each tab it
// opens is a browser context of its own (its own storage), so two tabs are
// two users.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the web tests need Chromium: install Debian's %q package (apt-get install %s; scripts/test.sh does it when run as root)",
			chromiumPackage, chromiumPackage)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// This machine's network is closed: anything Chromium would fetch
		// for itself is refused, and some of it slows start-up down.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-crash-reporter", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("cannot start %s: %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return &browser{t: t, ctx: ctx}
}

// tab is one page of one user.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
	mu   sync.Mutex
	reqs []string // "METHOD URL" of every request the page made
}

func (b *browser) tab(name string) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	tb := &tab{t: b.t, name: name, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("%s: cannot open a tab: %v", name, err)
	}
	reqs := chromedp.Events(ctx, network.RequestWillBeSent)
	console := chromedp.Console(ctx)
	go func() {
		for ev, err := range reqs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.reqs = append(tb.reqs, ev.Request.Method+" "+ev.Request.URL)
			tb.mu.Unlock()
		}
	}()
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			// A script error on a page is a defect, whatever the scenario.
			if m.Type == chromedp.ConsoleException {
				b.t.Errorf("%s: uncaught exception on the page: %s", name, m.Text)
			}
		}
	}()
	return tb
}

// requests returns the requests made so far whose "METHOD URL" contains s.
func (tb *tab) requests(s string) []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []string
	for _, r := range tb.reqs {
		if strings.Contains(r, s) {
			out = append(out, r)
		}
	}
	return out
}

// do runs actions, each bounded so that a broken page fails the test
// rather than hanging it.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

// waitJS waits until the expression is truthy on the page.
func (tb *tab) waitJS(what, expr string, timeout time.Duration) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
		tb.t.Fatalf("%s: timed out waiting for %s (%s): %v\npage text:\n%s", tb.name, what, expr, err, tb.text("body"))
	}
}

// eval evaluates a JavaScript expression on the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, expr, err)
	}
	return v
}

func (tb *tab) text(sel string) string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.innerText ?? ""`, sel)))
	return s
}

// open loads a page of the gateway and signs in as the user with the dev
// user picker, then waits for the page's WebSocket. It marks the window, so
// that stillSamePage can tell a reload or a navigation.
func (tb *tab) open(url string, uid int64) {
	tb.t.Helper()
	tb.do("open "+url,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("pick-form")),
		chromedp.SetValue(chromedp.ID("pick-user"), fmt.Sprint(uid)),
		chromedp.Click(chromedp.CSS("#pick-form button")),
	)
	tb.waitJS("sign-in", fmt.Sprintf(`document.querySelector("#who")?.dataset.user === "%d"`, uid), 10*time.Second)
	tb.waitJS("the WebSocket", `document.querySelector("#push-status")?.dataset.state === "open"`, 15*time.Second)
	eval[bool](tb, `window.__flashgateTestMark = true`)
}

// stillSamePage fails the test if the page was reloaded or left since open.
func (tb *tab) stillSamePage() {
	tb.t.Helper()
	if !eval[bool](tb, `window.__flashgateTestMark === true`) {
		tb.t.Fatalf("%s: the page was reloaded or navigated away", tb.name)
	}
}

// screenshot captures the page at a desktop and a phone viewport, checks
// each is not blank and that the phone one needs no sideways scrolling, and
// writes them to docs/screenshots with FLASHGATE_UPDATE_SCREENSHOTS=1 (to
// the test's temporary directory otherwise, so a test run leaves the tree
// as it was).
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	dir := tb.t.TempDir()
	if os.Getenv("FLASHGATE_UPDATE_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "screenshots")
	}
	// Every control has a label a screen reader reads out.
	if bare := eval[[]string](tb, `[...document.querySelectorAll("input, select, textarea, button")]
		.filter(e => e.type !== "hidden" && !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim())
		.map(e => e.outerHTML)`); len(bare) > 0 {
		tb.t.Errorf("%s: controls without a label: %v", name, bare)
	}
	for _, v := range []struct {
		suffix        string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}{
		{"desktop", 1280, 800, nil},
		{"phone", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait}},
	} {
		tb.do("viewport "+v.suffix, chromedp.EmulateViewport(v.width, v.height, v.opts...))
		// Wait for the layout at the new width before the picture.
		tb.waitJS("layout at "+v.suffix, fmt.Sprintf(`window.innerWidth === %d`, v.width), 5*time.Second)
		if v.suffix == "phone" {
			if w := eval[int](tb, `document.documentElement.scrollWidth`); w > int(v.width) {
				tb.t.Errorf("%s: at %d px wide the page is %d px wide: it scrolls sideways on a phone", name, v.width, w)
			}
		}
		ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
		buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		cancel()
		if err != nil {
			tb.t.Fatalf("screenshot %s: %v", name, err)
		}
		checkNotBlank(tb.t, name+"-"+v.suffix, buf, int(v.width))
		if err := os.WriteFile(filepath.Join(dir, name+"-"+v.suffix+".png"), buf, 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
	tb.do("viewport reset", chromedp.EmulateViewport(1280, 800))
}

// checkNotBlank decodes a PNG and fails unless it is the viewport's width
// and holds more than a handful of colours: a page that failed to render is
// one colour, or two.
func checkNotBlank(t *testing.T, name string, b []byte, width int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if w := img.Bounds().Dx(); w != width {
		t.Errorf("screenshot %s is %d px wide, want %d", name, w, width)
	}
	colours := map[[4]uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 3 {
		for x := r.Min.X; x < r.Max.X; x += 3 {
			c := img.At(x, y)
			cr, cg, cb, ca := c.RGBA()
			colours[[4]uint32{cr, cg, cb, ca}] = true
		}
	}
	if len(colours) < 16 {
		t.Errorf("screenshot %s has %d colours: the page looks blank", name, len(colours))
	}
}
