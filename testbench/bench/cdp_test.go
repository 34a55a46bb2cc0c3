package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// browser is headless Chromium driven over the DevTools protocol: just
// enough of it (navigate, evaluate, screenshot) for the console test.
type browser struct {
	t    *testing.T
	cmd  *exec.Cmd
	ws   *websocket.Conn
	wmu  sync.Mutex
	id   atomic.Int64
	mu   sync.Mutex
	wait map[int64]chan cdpReply
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func startBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0", "--window-size=1280,1400", "about:blank")
	// Its own process group: chromium's zygote, renderer and crash
	// handler outlive the main process and keep writing to the profile,
	// which the test's cleanup then cannot remove.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = cmd.Wait()
		for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	})
	re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var wsURL string
	select {
	case wsURL = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not open its DevTools port")
	}
	// The page target, from /json/list on the same host.
	host := strings.TrimPrefix(wsURL, "ws://")
	host = host[:strings.Index(host, "/")]
	var pageWS string
	for range 50 {
		resp, err := http.Get("http://" + host + "/json/list")
		if err == nil {
			var targets []struct{ Type, WebSocketDebuggerURL string }
			json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" {
					pageWS = tg.WebSocketDebuggerURL
				}
			}
		}
		if pageWS != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pageWS == "" {
		t.Fatal("chromium has no page target")
	}
	ws, _, err := websocket.DefaultDialer.Dial(pageWS, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, cmd: cmd, ws: ws, wait: map[int64]chan cdpReply{}}
	go b.read()
	t.Cleanup(func() { ws.Close() })
	return b
}

func (b *browser) read() {
	for {
		var m struct {
			ID int64 `json:"id"`
			cdpReply
		}
		if err := b.ws.ReadJSON(&m); err != nil {
			return
		}
		if m.ID == 0 {
			continue // an event
		}
		b.mu.Lock()
		ch := b.wait[m.ID]
		delete(b.wait, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

func (b *browser) call(method string, params any, out any) error {
	id := b.id.Add(1)
	ch := make(chan cdpReply, 1)
	b.mu.Lock()
	b.wait[id] = ch
	b.mu.Unlock()
	b.wmu.Lock()
	err := b.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params})
	b.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: no answer", method)
	}
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	if err := b.call("Page.navigate", map[string]any{"url": url}, nil); err != nil {
		b.t.Fatal(err)
	}
}

// eval runs a JavaScript expression in the page and decodes its value.
func (b *browser) eval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("javascript: %s (%s)", r.Exception.Text, expr)
	}
	if out != nil {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

// waitFor evaluates expr until it is true.
func (b *browser) waitFor(ctx context.Context, what, expr string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var ok bool
		if last = b.eval(expr, &ok); last == nil && ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Fatalf("browser: %s: not within %v (last error %v)", what, within, last)
}

func (b *browser) screenshot(path string) {
	b.t.Helper()
	var r struct {
		Data string `json:"data"`
	}
	if err := b.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d bytes)", path, len(png))
}
