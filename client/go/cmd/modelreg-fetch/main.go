// Command modelreg-fetch resolves a modelreg alias, downloads the artifact of
// the version it points at, and optionally watches the alias for changes.
//
//	modelreg-fetch -server 127.0.0.1:50051 \
//	    -alias models/fraud/aliases/production -out ./serving/fraud -watch
//
// On a registry with authentication on, pass a bearer token (a JWT or a
// service-account token) with -token, -token-file or $MODELREG_TOKEN.
//
// Every chunk is checked against its CRC32C (Castagnoli) and every file
// against its sha256 digest before it is renamed into place, so a file under
// -out is either absent or complete and verified. A file already there with
// the right digest is not downloaded again.
//
// With -verify-key k.pub (repeatable), the version must carry an OpenSSF
// model signature by one of those keys over exactly the manifest's files;
// it is checked before any file is written, so nothing lands under -out
// otherwise.
//
// Output, one line each, space separated:
//
//	resolved <alias> <version> <artifact digest> <revision>
//	verified <version> <signer key fingerprint>
//	file <path> <size> <digest> downloaded|cached
//	done <files> <bytes>
//	event <revision> <type> <resource>
//
// Exit status: 0 on success (and when a watch is interrupted), 1 on an error,
// 2 on bad usage.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	modelregistryv1 "github.com/modelreg/modelreg/client/go/modelregistry/v1"
)

const (
	manifestMediaType = "application/vnd.modelreg.manifest.v1+json"
	maxManifestBytes  = 4 << 20
	maxPathLength     = 1024
	// Download chunks are at most 4 MiB of data; messages at most 8 MiB.
	maxMessageBytes = 8 << 20
	// Times a broken download stream is resumed from the last verified byte.
	downloadAttempts = 5
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	digestRe   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	aliasRe    = regexp.MustCompile(`^models/[^/]+/aliases/[^/]+$`)
)

type options struct {
	server    string
	alias     string
	out       string
	watch     bool
	maxEvents int
	timeout   time.Duration
	token     string
	keys      keyFiles
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modelreg-fetch:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "modelreg-fetch:", describe(err))
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var opts options
	fs := flag.NewFlagSet("modelreg-fetch", flag.ContinueOnError)
	fs.StringVar(&opts.server, "server", "127.0.0.1:50051", "registry address, host:port (plaintext); several, comma-separated and nearest first (the region's edge, then the primary), to fall back to the next when one is down")
	fs.StringVar(&opts.alias, "alias", "", "alias to resolve, models/{model}/aliases/{alias}")
	fs.StringVar(&opts.out, "out", "", "directory to download the artifact's files into")
	fs.BoolVar(&opts.watch, "watch", false, "after the download, print the alias's events until interrupted")
	fs.IntVar(&opts.maxEvents, "max-events", 0, "with -watch: stop after this many events (0: no limit)")
	fs.DurationVar(&opts.timeout, "timeout", 30*time.Second, "deadline of each metadata call")
	fs.StringVar(&opts.token, "token", os.Getenv("MODELREG_TOKEN"), "bearer token sent with every call (default $MODELREG_TOKEN)")
	tokenFile := fs.String("token-file", "", "read the bearer token from this file")
	fs.Var(&opts.keys, "verify-key", "PEM public key: require a model signature by it (repeatable)")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if *tokenFile != "" {
		data, err := os.ReadFile(*tokenFile)
		if err != nil {
			return opts, fmt.Errorf("-token-file: %w", err)
		}
		opts.token = strings.TrimSpace(string(data))
	}
	switch {
	case fs.NArg() > 0:
		return opts, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case !aliasRe.MatchString(opts.alias):
		return opts, fmt.Errorf("-alias must be models/{model}/aliases/{alias}, got %q", opts.alias)
	case opts.out == "":
		return opts, errors.New("-out is required")
	case opts.maxEvents < 0:
		return opts, errors.New("-max-events must not be negative")
	}
	return opts, nil
}

// dial connects to one address, or to the first of several that answers
// (pick_first over the list in order, nearest first): when it goes down,
// gRPC tries the list again from the start, so calls move to the next
// address and back to the nearest once it is up.
func dial(servers string) (*grpc.ClientConn, error) {
	dialOpts := []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes)),
	}
	var addrs []resolver.Address
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			addrs = append(addrs, resolver.Address{Addr: s})
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("-server: no address")
	}
	if len(addrs) == 1 {
		return grpc.Dial(addrs[0].Addr, dialOpts...)
	}
	r := manual.NewBuilderWithScheme("modelreg")
	r.InitialState(resolver.State{Addresses: addrs})
	dialOpts = append(dialOpts, grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingPolicy":"pick_first"}`))
	return grpc.Dial(r.Scheme()+":///registry", dialOpts...)
}

func run(ctx context.Context, opts options) error {
	if opts.token != "" {
		// Every call below derives its context from this one.
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+opts.token)
	}
	conn, err := dial(opts.server)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", opts.server, err)
	}
	defer conn.Close()
	registry := modelregistryv1.NewRegistryServiceClient(conn)
	artifacts := modelregistryv1.NewArtifactServiceClient(conn)
	events := modelregistryv1.NewEventServiceClient(conn)

	callCtx, cancel := context.WithTimeout(ctx, opts.timeout)
	resolved, err := registry.ResolveAlias(callCtx, &modelregistryv1.ResolveAliasRequest{Name: opts.alias})
	cancel()
	if err != nil {
		return fmt.Errorf("resolve %s: %w", opts.alias, err)
	}
	version := resolved.GetModelVersion()
	artifact := version.GetArtifact()
	if artifact.GetDigest() == "" {
		return fmt.Errorf("%s: version %s has no artifact", opts.alias, version.GetName())
	}
	fmt.Printf("resolved %s %s %s %d\n", opts.alias, version.GetName(), artifact.GetDigest(), resolved.GetRevision())

	var check func(*manifest) error
	if len(opts.keys) > 0 {
		keys, err := loadKeys(opts.keys)
		if err != nil {
			return err
		}
		signatures := modelregistryv1.NewSignatureServiceClient(conn)
		check = func(m *manifest) error {
			callCtx, cancel := context.WithTimeout(ctx, opts.timeout)
			defer cancel()
			signer, err := verifyVersion(callCtx, signatures, artifacts, version.GetName(), keys, m)
			if err != nil {
				return err
			}
			fmt.Printf("verified %s %s\n", version.GetName(), signer)
			return nil
		}
	}
	if err := fetchArtifact(ctx, artifacts, version.GetName(), artifact.GetDigest(), opts.out, check); err != nil {
		return err
	}
	if !opts.watch {
		return nil
	}
	return watch(ctx, events, opts.alias, resolved.GetRevision()+1, opts.maxEvents)
}

// manifest is a version's artifact: the files it is made of.
type manifest struct {
	SchemaVersion int            `json:"schemaVersion"`
	MediaType     string         `json:"mediaType"`
	Files         []manifestFile `json:"files"`
}

type manifestFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
}

// fetchArtifact downloads the version's manifest, checks it against the
// digest ResolveAlias returned, then downloads every file it lists.
func fetchArtifact(ctx context.Context, client modelregistryv1.ArtifactServiceClient, version, digest, out string, check func(*manifest) error) error {
	var buf bytes.Buffer
	target := &modelregistryv1.DownloadRequest{Target: &modelregistryv1.DownloadRequest_Version{Version: version}}
	if err := download(ctx, client, target, digest, maxManifestBytes, &buf); err != nil {
		return fmt.Errorf("manifest of %s: %w", version, err)
	}
	m, err := parseManifest(buf.Bytes())
	if err != nil {
		return fmt.Errorf("manifest of %s: %w", version, err)
	}
	if check != nil {
		if err := check(m); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var total int64
	for _, f := range m.Files {
		state, err := fetchFile(ctx, client, f, out)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		total += f.Size
		fmt.Printf("file %s %d %s %s\n", f.Path, f.Size, f.Digest, state)
	}
	fmt.Printf("done %d %d\n", len(m.Files), total)
	return nil
}

func parseManifest(data []byte) (*manifest, error) {
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if m.SchemaVersion != 1 || m.MediaType != manifestMediaType {
		return nil, fmt.Errorf("unsupported manifest (schemaVersion %d, mediaType %q)", m.SchemaVersion, m.MediaType)
	}
	if len(m.Files) == 0 {
		return nil, errors.New("no files")
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return nil, err
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("duplicate path %q", f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 || !digestRe.MatchString(f.Digest) {
			return nil, fmt.Errorf("bad size or digest for %q", f.Path)
		}
	}
	for _, f := range m.Files {
		parts := strings.Split(f.Path, "/")
		for i := 1; i < len(parts); i++ {
			if seen[strings.Join(parts[:i], "/")] {
				return nil, fmt.Errorf("%q is inside another file's path", f.Path)
			}
		}
	}
	return &m, nil
}

// checkPath keeps a manifest path inside the output directory: relative,
// "/"-separated, no empty, "." or ".." segment, no backslash or control
// character (the rule the server enforces on push).
func checkPath(p string) error {
	if p == "" || len(p) > maxPathLength || strings.HasPrefix(p, "/") || strings.Contains(p, `\`) {
		return fmt.Errorf("bad path %q", p)
	}
	for _, r := range p {
		if r < 32 {
			return fmt.Errorf("bad path %q", p)
		}
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("bad path %q", p)
		}
	}
	return nil
}

// fetchFile downloads one file by digest into a temporary file beside its
// target, then renames it into place. It returns "cached" when the target
// already holds the right bytes.
func fetchFile(ctx context.Context, client modelregistryv1.ArtifactServiceClient, f manifestFile, out string) (string, error) {
	final := filepath.Join(out, filepath.FromSlash(f.Path))
	if ok, err := hasDigest(final, f); err != nil {
		return "", err
	} else if ok {
		return "cached", nil
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(final)+".partial-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	target := &modelregistryv1.DownloadRequest{Target: &modelregistryv1.DownloadRequest_Digest{Digest: f.Digest}}
	err = download(ctx, client, target, f.Digest, f.Size, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		return "", err
	}
	return "downloaded", nil
}

// hasDigest reports whether path is a regular file with f's size and digest.
func hasDigest(path string, f manifestFile) (bool, error) {
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil || !info.Mode().IsRegular() || info.Size() != f.Size {
		return false, err
	}
	file, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return false, err
	}
	return "sha256:"+hex.EncodeToString(h.Sum(nil)) == f.Digest, nil
}

// download streams one blob into w: the header first, then chunks, each
// checked against its CRC32C and expected offset. The whole blob must be
// at most maxSize bytes and hash to digest. A stream that breaks on a
// transient error is resumed from the next byte.
func download(ctx context.Context, client modelregistryv1.ArtifactServiceClient, req *modelregistryv1.DownloadRequest, digest string, maxSize int64, w io.Writer) error {
	h := sha256.New()
	d := downloader{w: io.MultiWriter(w, h), digest: digest, maxSize: maxSize, size: -1}
	for attempt := 1; ; attempt++ {
		req.Offset = d.offset
		err := d.stream(ctx, client, req)
		if err == nil {
			break
		}
		if attempt >= downloadAttempts || !transient(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	if d.offset != d.size {
		return fmt.Errorf("stream ended at byte %d of %d", d.offset, d.size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("digest mismatch: got %s, want %s", got, digest)
	}
	return nil
}

type downloader struct {
	w       io.Writer
	digest  string
	maxSize int64
	size    int64 // from the first header; -1 until then
	offset  int64 // bytes verified and written so far
}

func (d *downloader) stream(ctx context.Context, client modelregistryv1.ArtifactServiceClient, req *modelregistryv1.DownloadRequest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Download(ctx, req)
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	header := first.GetHeader()
	if header == nil {
		return errors.New("download stream did not start with a header")
	}
	blob := header.GetBlob()
	if blob.GetDigest() != d.digest {
		return fmt.Errorf("server sent %s, want %s", blob.GetDigest(), d.digest)
	}
	if d.size < 0 {
		if blob.GetSizeBytes() < 0 || blob.GetSizeBytes() > d.maxSize {
			return fmt.Errorf("blob is %d bytes, expected at most %d", blob.GetSizeBytes(), d.maxSize)
		}
		d.size = blob.GetSizeBytes()
	} else if blob.GetSizeBytes() != d.size {
		return fmt.Errorf("blob size changed from %d to %d", d.size, blob.GetSizeBytes())
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		chunk := msg.GetChunk()
		if chunk == nil {
			return errors.New("unexpected message after the header")
		}
		data := chunk.GetData()
		if chunk.GetOffset() != d.offset {
			return fmt.Errorf("chunk at offset %d, expected %d", chunk.GetOffset(), d.offset)
		}
		if d.offset+int64(len(data)) > d.size {
			return fmt.Errorf("chunk at offset %d runs past the end (%d bytes)", d.offset, d.size)
		}
		if sum := crc32.Checksum(data, castagnoli); sum != chunk.GetCrc32C() {
			return fmt.Errorf("CRC32C mismatch at offset %d: got %08x, want %08x", d.offset, sum, chunk.GetCrc32C())
		}
		if _, err := d.w.Write(data); err != nil {
			return err
		}
		d.offset += int64(len(data))
	}
}

// watch prints the alias's events from startRevision on. A broken stream is
// resumed after the last revision the server reported, waiting for the
// server to come back if it went away. It returns nil when ctx is cancelled
// (Ctrl-C) or after maxEvents events (0: no limit).
func watch(ctx context.Context, client modelregistryv1.EventServiceClient, alias string, startRevision int64, maxEvents int) error {
	w := &watcher{client: client, alias: alias, next: startRevision, maxEvents: maxEvents}
	var backoff time.Duration
	for {
		received, err := w.stream(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !transient(err) {
			return fmt.Errorf("watch %s: %w", alias, err)
		}
		if received {
			backoff = 0
		}
		backoff = shorter(2*backoff+250*time.Millisecond, 10*time.Second)
		fmt.Fprintf(os.Stderr, "modelreg-fetch: watch interrupted (%s), resuming from revision %d\n", describe(err), w.next)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// watcher prints an alias's events and remembers where to resume.
type watcher struct {
	client    modelregistryv1.EventServiceClient
	alias     string
	next      int64 // the first revision not yet covered
	seen      int   // events printed
	maxEvents int
}

// stream runs one Watch call until it breaks (the error) or maxEvents
// events are printed (nil). received tells whether any message arrived.
func (w *watcher) stream(ctx context.Context) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &modelregistryv1.WatchRequest{
		Filter:        &modelregistryv1.EventFilter{Resource: w.alias},
		StartRevision: w.next,
	}
	// WaitForReady: while the server is down, wait for it instead of failing.
	stream, err := w.client.Watch(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return received, err
		}
		received = true
		for _, ev := range resp.GetEvents() {
			fmt.Printf("event %d %s %s\n", ev.GetRevision(), ev.GetType(), ev.GetResource())
			w.next = ev.GetRevision() + 1
			w.seen++
			if w.maxEvents > 0 && w.seen >= w.maxEvents {
				return received, nil
			}
		}
		// Progress messages carry no events but move the resume point.
		if resp.GetRevision() >= w.next {
			w.next = resp.GetRevision() + 1
		}
	}
}

func shorter(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// transient reports whether a call that failed with err is worth retrying:
// the server or the network went away, or a watcher fell behind.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// describe renders an error with its gRPC code and ErrorInfo reason, if any.
func describe(err error) string {
	st, ok := status.FromError(unwrapStatus(err))
	if !ok || st.Code() == codes.OK {
		return err.Error()
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
			return fmt.Sprintf("%s (%s %s)", err, st.Code(), info.GetReason())
		}
	}
	return err.Error()
}

// unwrapStatus finds the gRPC status error inside a wrapped error.
func unwrapStatus(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := status.FromError(e); ok {
			return e
		}
	}
	return err
}
