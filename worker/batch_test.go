package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// stepLog records what pipeline's steps did, in the order they did it.
type stepLog struct {
	mu     sync.Mutex
	events []string
	active map[string]int // calls of each step running now
	most   map[string]int // most calls of each step running at once
}

func newStepLog() *stepLog {
	return &stepLog{active: map[string]int{}, most: map[string]int{}}
}

// enter records the start of step on chunk and returns the function that
// records its end.
func (l *stepLog) enter(step string, chunk int) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("%s %d", step, chunk))
	l.active[step]++
	l.most[step] = max(l.most[step], l.active[step])
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.active[step]--
	}
}

// of returns the chunks step handled, in the order it started them.
func (l *stepLog) of(step string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, e := range l.events {
		var s string
		var c int
		fmt.Sscanf(e, "%s %d", &s, &c)
		if s == step {
			out = append(out, c)
		}
	}
	return out
}

func (l *stepLog) running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.active {
		n += a
	}
	return n
}

// chunksOf returns n one-item chunks holding 0..n-1.
func chunksOf(n int) [][]int {
	out := make([][]int, n)
	for i := range out {
		out[i] = []int{i}
	}
	return out
}

// withDeadline fails the test instead of hanging when run does not return:
// a pipeline that does not overlap the steps the test waits for never
// finishes.
func withDeadline(t *testing.T, run func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- run() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("pipeline did not return: the steps it should overlap did not")
		return nil
	}
}

// Every chunk goes through claim, write and publish, each step in chunk
// order and one chunk at a time; and the steps overlap: chunk 1's publish
// waits here until chunk 2's write has started, and chunk 3's claim until
// chunk 2's write has, which finishes only if pipeline runs them at once.
func TestPipelineOrderAndOverlap(t *testing.T) {
	l := newStepLog()
	started := map[string]chan struct{}{}
	for _, k := range []string{"write 2"} {
		started[k] = make(chan struct{})
	}
	err := withDeadline(t, func() error {
		return pipeline(context.Background(), chunksOf(6),
			func(_ context.Context, c []int) (int, error) {
				defer l.enter("claim", c[0])()
				if c[0] == 3 {
					<-started["write 2"]
				}
				return c[0], nil
			},
			func(_ context.Context, c int) (int, error) {
				defer l.enter("write", c)()
				if c == 2 {
					close(started["write 2"])
				}
				return c, nil
			},
			func(_ context.Context, c int) error {
				defer l.enter("publish", c)()
				if c == 1 {
					<-started["write 2"]
				}
				return nil
			})
	})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	want := []int{0, 1, 2, 3, 4, 5}
	for _, step := range []string{"claim", "write", "publish"} {
		if got := l.of(step); !reflect.DeepEqual(got, want) {
			t.Errorf("%s handled chunks %v, want %v", step, got, want)
		}
		if l.most[step] != 1 {
			t.Errorf("%s ran %d chunks at once, want 1", step, l.most[step])
		}
	}
	if n := l.running(); n != 0 {
		t.Errorf("%d steps still running after pipeline returned", n)
	}
}

// The claim step runs at most one chunk ahead of the write step.
func TestPipelineClaimsOneAhead(t *testing.T) {
	var mu sync.Mutex
	claimed, written := 0, 0
	worst := 0
	err := withDeadline(t, func() error {
		return pipeline(context.Background(), chunksOf(8),
			func(_ context.Context, c []int) (int, error) {
				mu.Lock()
				claimed++
				worst = max(worst, claimed-written)
				mu.Unlock()
				return c[0], nil
			},
			func(_ context.Context, c int) (int, error) {
				time.Sleep(time.Millisecond) // give the claimer every chance to run ahead
				mu.Lock()
				written++
				mu.Unlock()
				return c, nil
			},
			func(context.Context, int) error { return nil })
	})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	// The chunk being written, the one claimed and waiting, and the one
	// the claimer holds until there is room.
	if worst > 3 {
		t.Errorf("claimed up to %d chunks ahead of the writes, want at most 3", worst)
	}
}

// A failing step stops the chunks after it: nothing later is published,
// the error comes back, and every step has returned by then, so the caller
// can leave the offsets uncommitted and the poll is delivered again.
func TestPipelineStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name            string
		failStep        string
		failChunk       int
		wantPublished   []int
		wantWrittenMost int // chunks written, at most
	}{
		{"claim", "claim", 3, []int{0, 1, 2}, 3},
		{"write", "write", 3, []int{0, 1, 2}, 4},
		{"publish", "publish", 2, []int{0, 1, 2}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newStepLog()
			step := func(name string, c int) error {
				defer l.enter(name, c)()
				if name == tc.failStep && c == tc.failChunk {
					return boom
				}
				return nil
			}
			err := withDeadline(t, func() error {
				return pipeline(context.Background(), chunksOf(10),
					func(_ context.Context, c []int) (int, error) { return c[0], step("claim", c[0]) },
					func(_ context.Context, c int) (int, error) { return c, step("write", c) },
					func(_ context.Context, c int) error { return step("publish", c) })
			})
			if !errors.Is(err, boom) {
				t.Fatalf("pipeline returned %v, want %v", err, boom)
			}
			if got := l.of("publish"); !reflect.DeepEqual(got, tc.wantPublished) {
				t.Errorf("published %v, want %v", got, tc.wantPublished)
			}
			written := l.of("write")
			if len(written) > tc.wantWrittenMost || !slices.IsSorted(written) {
				t.Errorf("wrote %v, want chunks in order and at most %d of them", written, tc.wantWrittenMost)
			}
			if n := l.running(); n != 0 {
				t.Errorf("%d steps still running after pipeline returned", n)
			}
		})
	}
}

func TestChunked(t *testing.T) {
	for _, tc := range []struct {
		n, size int
		want    [][]int
	}{
		{5, 2, [][]int{{0, 1}, {2, 3}, {4}}},
		{4, 2, [][]int{{0, 1}, {2, 3}}},
		{3, 0, [][]int{{0, 1, 2}}},
		{0, 2, nil},
	} {
		items := make([]int, tc.n)
		for i := range items {
			items[i] = i
		}
		if got := chunked(items, tc.size); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("chunked(%d items, %d) = %v, want %v", tc.n, tc.size, got, tc.want)
		}
	}
}
