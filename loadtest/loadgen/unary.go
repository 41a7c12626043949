package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	mathrand "math/rand"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	modelregistryv1 "github.com/modelreg/modelreg/client/go/modelregistry/v1"
)

type unaryOptions struct {
	target   string
	method   string
	names    []string
	clients  int
	calls    int
	duration time.Duration
	timeout  time.Duration
	versions int
	seed     int64
	wait     bool
	headers  headers
}

// unaryResult is the line read and write print: every call's client-side
// latency (failed calls included), the non-OK calls by status code, the
// wall time of the run and the CPU the whole process spent in it.
type unaryResult struct {
	Calls     int            `json:"calls"`
	Errors    map[string]int `json:"errors"`
	ElapsedS  float64        `json:"elapsed_s"`
	CPUS      float64        `json:"cpu_s"`
	LatencyMS []float64      `json:"latency_ms"`
}

// One call on a resource name: the time the call itself took.
type callFunc func(ctx context.Context, c modelregistryv1.RegistryServiceClient, rng *mathrand.Rand, name string) (time.Duration, error)

var modeMethods = map[string][]string{
	"read":  {"GetModel", "ListModelVersions", "ResolveAlias"},
	"write": {"CreateModelVersion", "SetAlias"},
}

// callOf is one call of method, with the request
// loadtest/bench_control_plane.py sends.
func callOf(method string, versions int) callFunc {
	return func(ctx context.Context, c modelregistryv1.RegistryServiceClient, rng *mathrand.Rand, name string) (time.Duration, error) {
		var err error
		start := time.Now()
		switch method {
		case "GetModel":
			_, err = c.GetModel(ctx, &modelregistryv1.GetModelRequest{Name: name})
		case "ListModelVersions":
			_, err = c.ListModelVersions(ctx, &modelregistryv1.ListModelVersionsRequest{Parent: name, PageSize: 10})
		case "ResolveAlias":
			_, err = c.ResolveAlias(ctx, &modelregistryv1.ResolveAliasRequest{Name: name})
		case "CreateModelVersion":
			var id [16]byte
			_, _ = rand.Read(id[:])
			version := &modelregistryv1.ModelVersion{SourceUri: "s3://bench/" + name + "/" + hex.EncodeToString(id[:])}
			start = time.Now()
			_, err = c.CreateModelVersion(ctx, &modelregistryv1.CreateModelVersionRequest{Parent: name, ModelVersion: version})
		case "SetAlias":
			// To a random one of versions 1..N, conditional on the etag
			// read just before; that read is not timed.
			var alias *modelregistryv1.Alias
			if alias, err = c.GetAlias(ctx, &modelregistryv1.GetAliasRequest{Name: name}); err != nil {
				break
			}
			req := &modelregistryv1.SetAliasRequest{
				Alias: &modelregistryv1.Alias{Name: name, Version: fmt.Sprintf("%s/versions/%d", modelOf(name), 1+rng.Intn(versions))},
				Etag:  alias.GetEtag(),
			}
			start = time.Now()
			_, err = c.SetAlias(ctx, req)
		}
		return time.Since(start), err
	}
}

// modelOf is the model a resource name belongs to: models/m for
// models/m/aliases/production.
func modelOf(name string) string {
	parts := strings.SplitN(name, "/", 3)
	if len(parts) < 2 {
		return name
	}
	return parts[0] + "/" + parts[1]
}

func unaryMain(mode string, args []string) error {
	var o unaryOptions
	var namesFile string
	known := modeMethods[mode]
	fs := flag.NewFlagSet("loadgen "+mode, flag.ContinueOnError)
	fs.StringVar(&o.target, "target", "127.0.0.1:50051", "server address, host:port (plaintext)")
	fs.StringVar(&o.method, "method", "", "RegistryService method: "+strings.Join(known, ", "))
	fs.StringVar(&namesFile, "names", "", "file of resource names, one a line, each call picks one at random: models/{model} (GetModel, ListModelVersions, CreateModelVersion) or models/{model}/aliases/{alias} (ResolveAlias, SetAlias)")
	fs.IntVar(&o.clients, "clients", 1, "concurrent closed-loop clients, one connection each")
	fs.IntVar(&o.calls, "calls", 0, "calls in all, shared evenly by the clients")
	fs.DurationVar(&o.duration, "duration", 0, "instead of --calls: every client calls until this much time has passed")
	fs.DurationVar(&o.timeout, "timeout", 600*time.Second, "deadline of the whole run; calls still open then fail")
	fs.IntVar(&o.versions, "versions", 0, "SetAlias: versions per model; the alias moves to a random one of 1..N")
	fs.Int64Var(&o.seed, "seed", 1, "client i picks names with the random seed seed+i")
	fs.BoolVar(&o.wait, "wait", false, "once every client is connected and has made one GetModel call, print {\"ready\": clients} and wait for a line on stdin before the measured calls")
	fs.Var(&o.headers, "header", "key=value metadata sent with every call (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case !contains(known, o.method):
		return badUsage("--method must be one of %s", strings.Join(known, ", "))
	case o.method == "SetAlias" && o.versions < 1:
		return badUsage("SetAlias needs --versions")
	case o.clients < 1:
		return badUsage("--clients must be at least 1")
	case (o.calls > 0) == (o.duration > 0):
		return badUsage("give one of --calls and --duration")
	case namesFile == "":
		return badUsage("--names is required")
	}
	names, err := readNames(namesFile)
	if err != nil {
		return err
	}
	o.names = names
	return runUnary(o, callOf(o.method, o.versions))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func readNames(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no names", path)
	}
	return names, nil
}

func runUnary(o unaryOptions, call callFunc) error {
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), o.headers.md), o.timeout)
	defer cancel()
	clients := make([]modelregistryv1.RegistryServiceClient, o.clients)
	for i := range clients {
		conn, err := dial(o.target)
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = modelregistryv1.NewRegistryServiceClient(conn)
	}
	// Connect and warm every client before any timing. A failure shows in
	// the measured calls.
	var warm sync.WaitGroup
	for i, c := range clients {
		warm.Add(1)
		go func(c modelregistryv1.RegistryServiceClient, name string) {
			defer warm.Done()
			_, _ = c.GetModel(ctx, &modelregistryv1.GetModelRequest{Name: modelOf(name)})
		}(c, o.names[i%len(o.names)])
	}
	warm.Wait()
	if o.wait {
		emit(map[string]int{"ready": o.clients})
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return errors.New("stdin closed before the start")
		}
	}

	latencies := make([][]time.Duration, o.clients)
	failed := make([]map[string]int, o.clients)
	var done sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for i, c := range clients {
		share := o.calls / o.clients
		if i < o.calls%o.clients {
			share++
		}
		if o.calls > 0 && share == 0 {
			continue
		}
		done.Add(1)
		go func(i int, c modelregistryv1.RegistryServiceClient, share int) {
			defer done.Done()
			rng := mathrand.New(mathrand.NewSource(o.seed + int64(i)))
			failed[i] = map[string]int{}
			for n := 0; ctx.Err() == nil; n++ {
				if o.calls > 0 && n == share || o.duration > 0 && time.Since(start) >= o.duration {
					break
				}
				lat, err := call(ctx, c, rng, o.names[rng.Intn(len(o.names))])
				latencies[i] = append(latencies[i], lat)
				if err != nil {
					failed[i][codeName(status.Code(err))]++
				}
			}
		}(i, c, share)
	}
	done.Wait()
	elapsed := time.Since(start)

	result := unaryResult{Errors: map[string]int{}, ElapsedS: elapsed.Seconds(), CPUS: (cpuTime() - cpu0).Seconds()}
	result.LatencyMS = []float64{}
	for i := range clients {
		for _, lat := range latencies[i] {
			result.LatencyMS = append(result.LatencyMS, float64(lat.Nanoseconds())/1e6)
		}
		for code, n := range failed[i] {
			result.Errors[code] += n
		}
	}
	result.Calls = len(result.LatencyMS)
	emit(result)
	return nil
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
