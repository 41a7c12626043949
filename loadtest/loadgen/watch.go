package main

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	modelregistryv1 "github.com/modelreg/modelreg/client/go/modelregistry/v1"
)

type watchOptions struct {
	target      string
	resource    string
	watchers    int
	perChannel  int
	expected    int
	openTimeout time.Duration
	timeout     time.Duration
	headers     headers
}

// watchOpened is the first line watch prints: every stream has received its
// first message (or --open-timeout passed).
type watchOpened struct {
	Open  int64   `json:"open"`
	OpenS float64 `json:"open_s"`
}

// watchResult is the second and last line: per watcher, one
// [revision, event time µs, receive time µs] per event received (both
// times since the Unix epoch), and the CPU time the process spent after
// the first line.
type watchResult struct {
	Open     int64        `json:"open"`
	OpenS    float64      `json:"open_s"`
	Events   [][][3]int64 `json:"events"`
	Failures []string     `json:"failures"`
	CPUS     float64      `json:"cpu_s"`
}

func watchMain(args []string) error {
	var o watchOptions
	fs := flag.NewFlagSet("loadgen watch", flag.ContinueOnError)
	fs.StringVar(&o.target, "target", "127.0.0.1:50051", "server address, host:port (plaintext)")
	fs.StringVar(&o.resource, "resource", "", "EventFilter.resource of every stream, e.g. models/bench/aliases/production")
	fs.IntVar(&o.watchers, "watchers", 1, "Watch streams to open")
	fs.IntVar(&o.perChannel, "per-channel", 100, "streams per client connection")
	fs.IntVar(&o.expected, "expected", 1, "events every watcher must receive")
	fs.DurationVar(&o.openTimeout, "open-timeout", 120*time.Second, "how long the streams may take to open")
	fs.DurationVar(&o.timeout, "timeout", 300*time.Second, "how long, once the streams are open, every watcher may take to receive its events")
	fs.Var(&o.headers, "header", "key=value metadata sent with every stream (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case o.resource == "":
		return badUsage("--resource is required")
	case o.watchers < 1 || o.perChannel < 1 || o.expected < 1:
		return badUsage("--watchers, --per-channel and --expected must be at least 1")
	}
	return runWatch(o)
}

func runWatch(o watchOptions) error {
	conns := make([]*grpc.ClientConn, (o.watchers+o.perChannel-1)/o.perChannel)
	for i := range conns {
		conn, err := dial(o.target)
		if err != nil {
			return err
		}
		defer conn.Close()
		conns[i] = conn
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(context.Background(), o.headers.md))
	defer cancel()
	req := &modelregistryv1.WatchRequest{Filter: &modelregistryv1.EventFilter{Resource: o.resource}}

	events := make([][][3]int64, o.watchers)
	errs := make([]error, o.watchers)
	var opened int64
	var started, done sync.WaitGroup
	started.Add(o.watchers)
	done.Add(o.watchers)
	t0 := time.Now()
	for i := 0; i < o.watchers; i++ {
		client := modelregistryv1.NewEventServiceClient(conns[i/o.perChannel])
		events[i] = make([][3]int64, 0, o.expected)
		go func(i int) {
			defer done.Done()
			errs[i] = watchOne(ctx, client, req, o.expected, &events[i], func() {
				atomic.AddInt64(&opened, 1)
				started.Done()
			}, started.Done)
		}(i)
	}

	failures := []string{}
	if !waitFor(&started, o.openTimeout) {
		failures = append(failures, fmt.Sprintf("only %d of %d streams opened", atomic.LoadInt64(&opened), o.watchers))
	}
	open := watchOpened{atomic.LoadInt64(&opened), time.Since(t0).Seconds()}
	emit(open)
	cpu0 := cpuTime()
	waitFor(&done, o.timeout)
	cancel()
	done.Wait()
	cpu := cpuTime() - cpu0
	late := 0
	for i, err := range errs {
		switch {
		case err == nil && len(events[i]) < o.expected:
			late++ // cancelled above
		case err != nil:
			failures = append(failures, fmt.Sprintf("watcher %d: %v", i, err))
		}
	}
	if late > 0 {
		failures = append(failures, fmt.Sprintf("%d streams did not get every event in time", late))
	}
	emit(watchResult{open.Open, open.OpenS, events, failures, cpu.Seconds()})
	return nil
}

// watchOne receives one Watch stream's messages until it has `expected`
// events, recording each event with the time Recv returned it. It calls
// opened on the stream's first message, or failed if the stream ends
// before one. Ended by ctx, it returns nil.
func watchOne(
	ctx context.Context,
	client modelregistryv1.EventServiceClient,
	req *modelregistryv1.WatchRequest,
	expected int,
	out *[][3]int64,
	opened, failed func(),
) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := true
	defer func() {
		if first {
			failed()
		}
	}()
	stream, err := client.Watch(ctx, req)
	for err == nil {
		var resp *modelregistryv1.WatchResponse
		resp, err = stream.Recv()
		now := time.Now().UnixMicro()
		if err != nil {
			break
		}
		if first {
			first = false
			opened()
		}
		for _, e := range resp.GetEvents() {
			t := e.GetTime()
			at := t.GetSeconds()*1_000_000 + int64(t.GetNanos())/1000
			*out = append(*out, [3]int64{e.GetRevision(), at, now})
		}
		if len(*out) >= expected {
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// waitFor waits for wg at most d; false if d passed first.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}
