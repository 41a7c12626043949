// Command loadgen drives a modelreg server for the benchmarks in loadtest/,
// with far less CPU per message than a Python client, so that a benchmark on
// a small machine measures the server rather than its own clients.
//
//	loadgen watch --target 127.0.0.1:50051 --resource models/bench/aliases/production \
//	    --watchers 1000 --per-channel 100 --expected 30
//	loadgen read --target 127.0.0.1:50051 --method GetModel --names names.txt \
//	    --clients 32 --calls 2000
//	loadgen write --target 127.0.0.1:50051 --method SetAlias --names aliases.txt \
//	    --versions 10 --clients 32 --calls 500
//
// watch opens --watchers EventService.Watch streams on one resource and
// records, per watcher, every event it receives; read and write run closed
// loops of one unary call each (see watch.go and unary.go). Results are JSON
// lines on stdout; the calling benchmark computes the figures.
//
// Exit status: 0 when the run completed (failed calls and streams are
// reported in the results), 1 on an error before the run, 2 on bad usage.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// The canonical status code names, as grpcio spells them (grpc.StatusCode).
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("CODE_%d", c)
}

// headers collects repeatable --header key=value flags as gRPC metadata.
type headers struct{ md metadata.MD }

func (h *headers) String() string { return "" }

func (h *headers) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	if h.md == nil {
		h.md = metadata.MD{}
	}
	h.md.Append(strings.ToLower(k), v)
	return nil
}

// dial makes one plaintext client connection of its own: every call of
// dial is a separate HTTP/2 connection to the server.
//
// The windows are fixed: with grpc-go's default dynamic flow control the
// client pings the server after receiving data, about once per call in a
// closed loop, and both sides pay for those pings (on a 2-core machine,
// about a fifth of the client's CPU per call and a tenth of the server's).
// The messages are small; 1 MiB is never the limit.
func dial(target string) (*grpc.ClientConn, error) {
	return grpc.Dial(target, grpc.WithInsecure(),
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20))
}

// emit prints v as one JSON line on stdout.
func emit(v interface{}) {
	line, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(line, '\n'))
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen watch|read|write [flags]; loadgen MODE -h for the flags")
}

func main() {
	// The server under test shares the machine: one core by default, and
	// fewer collections. On a 2-core box, one P also wakes fewer threads
	// per call, which took another fifth or so off the CPU per unary call.
	// $GOMAXPROCS and $GOGC still rule when set.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch mode, args := os.Args[1], os.Args[2:]; mode {
	case "watch":
		err = watchMain(args)
	case "read", "write":
		err = unaryMain(mode, args)
	case "-h", "-help", "--help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	var bad usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &bad):
		if bad.msg != "" { // the flag package has printed its own
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func badUsage(format string, a ...interface{}) error {
	return usageError{fmt.Sprintf(format, a...)}
}

// parse parses a mode's flags; a flag error is a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{}
	}
	if fs.NArg() > 0 {
		return badUsage("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
