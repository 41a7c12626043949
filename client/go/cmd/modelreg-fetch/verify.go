package main

// Consumer-side verification of OpenSSF model signatures (the bundles of the
// model-signing package): a Sigstore bundle whose DSSE envelope carries an
// in-toto statement listing every file of the model with its sha256. The
// envelope's signature is checked with the standard library's ECDSA under
// keys the caller holds, and the statement's files must be exactly the
// manifest's. Since every file is then checked against its manifest digest
// as it is downloaded, what lands under -out is what the key signed.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	modelregistryv1 "github.com/modelreg/modelreg/client/go/modelregistry/v1"
)

const (
	bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	payloadType     = "application/vnd.in-toto+json"
	statementType   = "https://in-toto.io/Statement/v1"
	predicateType   = "https://model_signing/signature/v1.0"
	maxBundleBytes  = 6 << 20
)

// trustedKey is a public key the caller trusts, with its fingerprint as
// model-signing writes it into bundles (sha256 of the PEM SubjectPublicKeyInfo).
type trustedKey struct {
	key  *ecdsa.PublicKey
	hint string
}

// keyFiles collects repeated -verify-key flags.
type keyFiles []string

func (k *keyFiles) String() string     { return strings.Join(*k, ",") }
func (k *keyFiles) Set(v string) error { *k = append(*k, v); return nil }

func loadKeys(paths []string) ([]trustedKey, error) {
	var keys []trustedKey
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("-verify-key: %w", err)
		}
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("-verify-key %s: not a PEM public key", path)
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("-verify-key %s: %w", path, err)
		}
		key, ok := parsed.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("-verify-key %s: not an EC key", path)
		}
		canonical := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: block.Bytes})
		sum := sha256.Sum256(canonical)
		keys = append(keys, trustedKey{key: key, hint: hex.EncodeToString(sum[:])})
	}
	return keys, nil
}

type bundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey *struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
	} `json:"verificationMaterial"`
	DsseEnvelope struct {
		Payload     string `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []struct {
			Sig string `json:"sig"`
		} `json:"signatures"`
	} `json:"dsseEnvelope"`
}

type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Predicate     struct {
		Serialization struct {
			Method   string `json:"method"`
			HashType string `json:"hash_type"`
		} `json:"serialization"`
		Resources []struct {
			Name      string `json:"name"`
			Algorithm string `json:"algorithm"`
			Digest    string `json:"digest"`
		} `json:"resources"`
	} `json:"predicate"`
}

// pae is DSSE's pre-authentication encoding, what the signature covers.
func pae(payload []byte) []byte {
	head := fmt.Sprintf("DSSEv1 %d %s %d ", len(payloadType), payloadType, len(payload))
	return append([]byte(head), payload...)
}

func digestFor(key *ecdsa.PublicKey, data []byte) ([]byte, error) {
	var h crypto.Hash
	switch key.Curve.Params().BitSize {
	case 256:
		h = crypto.SHA256
	case 384:
		h = crypto.SHA384
	case 521:
		h = crypto.SHA512
	default:
		return nil, fmt.Errorf("unsupported curve %s", key.Curve.Params().Name)
	}
	hasher := h.New()
	hasher.Write(data)
	return hasher.Sum(nil), nil
}

// verifyBundle checks one bundle under keys and against the manifest's
// files; it returns the signer's fingerprint.
func verifyBundle(data []byte, keys []trustedKey, m *manifest) (string, error) {
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return "", fmt.Errorf("not a bundle: %w", err)
	}
	if b.MediaType != bundleMediaType || b.DsseEnvelope.PayloadType != payloadType {
		return "", errors.New("not a model-signing bundle")
	}
	if b.VerificationMaterial.PublicKey == nil {
		return "", errors.New("signed with a certificate; only key signatures are checked here")
	}
	if len(b.DsseEnvelope.Signatures) != 1 {
		return "", errors.New("expected one signature in the envelope")
	}
	payload, err := base64.StdEncoding.DecodeString(b.DsseEnvelope.Payload)
	if err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(b.DsseEnvelope.Signatures[0].Sig)
	if err != nil {
		return "", fmt.Errorf("signature: %w", err)
	}
	hint := b.VerificationMaterial.PublicKey.Hint
	signer := ""
	for _, k := range keys {
		if hint != "" && hint != k.hint {
			continue
		}
		digest, err := digestFor(k.key, pae(payload))
		if err != nil {
			return "", err
		}
		if ecdsa.VerifyASN1(k.key, digest, sig) {
			signer = "sha256:" + k.hint
			break
		}
	}
	if signer == "" {
		if hint != "" {
			return "", fmt.Errorf("not signed by a trusted key (bundle names key sha256:%s)", hint)
		}
		return "", errors.New("not signed by a trusted key")
	}
	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return "", fmt.Errorf("statement: %w", err)
	}
	if st.Type != statementType || st.PredicateType != predicateType {
		return "", fmt.Errorf("unsupported statement %q / %q", st.Type, st.PredicateType)
	}
	if st.Predicate.Serialization.Method != "files" || st.Predicate.Serialization.HashType != "sha256" {
		return "", errors.New("only signatures of whole files by sha256 are supported")
	}
	signed := make(map[string]string, len(st.Predicate.Resources))
	for _, r := range st.Predicate.Resources {
		if r.Algorithm != "sha256" {
			return "", fmt.Errorf("%s: algorithm %q", r.Name, r.Algorithm)
		}
		signed[r.Name] = "sha256:" + r.Digest
	}
	expected := make(map[string]string, len(m.Files))
	for _, f := range m.Files {
		expected[f.Path] = f.Digest
	}
	var paths []string
	for p := range signed {
		paths = append(paths, p)
	}
	for p := range expected {
		if _, ok := signed[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		got, inSigned := signed[p]
		want, inManifest := expected[p]
		switch {
		case !inSigned:
			return "", fmt.Errorf("%q is in the model but not in the signature", p)
		case !inManifest:
			return "", fmt.Errorf("the signature lists %q, which the model does not have", p)
		case got != want:
			return "", fmt.Errorf("%q differs: signed %s, model %s", p, got, want)
		}
	}
	return signer, nil
}

// verifyVersion fetches the version's signatures and returns the signer of
// the first that verifies; an error naming every failure otherwise.
func verifyVersion(ctx context.Context, sigs modelregistryv1.SignatureServiceClient, artifacts modelregistryv1.ArtifactServiceClient, version string, keys []trustedKey, m *manifest) (string, error) {
	listed, err := sigs.ListSignatures(ctx, &modelregistryv1.ListSignaturesRequest{Parent: version})
	if err != nil {
		return "", fmt.Errorf("signatures of %s: %w", version, err)
	}
	if len(listed.GetSignatures()) == 0 {
		return "", fmt.Errorf("%s carries no signature", version)
	}
	var problems []string
	for _, s := range listed.GetSignatures() {
		var buf bytes.Buffer
		target := &modelregistryv1.DownloadRequest{Target: &modelregistryv1.DownloadRequest_Digest{Digest: s.GetDigest()}}
		if err := download(ctx, artifacts, target, s.GetDigest(), maxBundleBytes, &buf); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", s.GetName(), err))
			continue
		}
		signer, err := verifyBundle(buf.Bytes(), keys, m)
		if err == nil {
			return signer, nil
		}
		problems = append(problems, fmt.Sprintf("%s: %v", s.GetName(), err))
	}
	return "", fmt.Errorf("no signature of %s verifies: %s", version, strings.Join(problems, "; "))
}
