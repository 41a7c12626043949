"""Error reasons of modelregistry.v1: generated from modelregistry/v1/error_reason.proto.

Do not edit: run scripts/gen_protos.py. Members are strings (the values' names,
as they travel in google.rpc.ErrorInfo), so they compare equal to a reason read
off the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

# The descriptor joins the default pool: server reflection can describe the enums.
from . import error_reason_pb2  # noqa: F401

ERROR_DOMAIN = "modelregistry.v1"
"""`google.rpc.ErrorInfo.domain` of every registry error: the proto package."""


class ErrorReason(enum.StrEnum):
    """Why a call failed: the `reason` of the google.rpc.ErrorInfo that every
    error of this API carries (AIP-193), exactly one per google.rpc.Status.

    * `ErrorInfo.reason` is the value's name, e.g. "MODEL_NOT_FOUND", never its
      number. Names are stable: clients branch on them, never on the message.
    * `ErrorInfo.domain` is this file's package name, "modelregistry.v1".
    * `ErrorInfo.metadata` holds string values under the keys listed in
      ErrorMetadataKey; `request_id` is always there.

    Each value's comment starts with the gRPC status code it comes with, then
    says what happened and which metadata keys it carries besides
    `request_id`. New reasons are added over time: a client that gets one it
    does not know acts on the status code alone.
    """

    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    """NOT_FOUND: the model does not exist. Metadata: `resource`."""

    VERSION_NOT_FOUND = "VERSION_NOT_FOUND"
    """NOT_FOUND: the version does not exist. Metadata: `resource`."""

    ALIAS_NOT_FOUND = "ALIAS_NOT_FOUND"
    """NOT_FOUND: the alias does not exist (for ResolveAlias with a read time:
    it did not exist then). Metadata: `resource`.
    """

    ROLLOUT_NOT_FOUND = "ROLLOUT_NOT_FOUND"
    """NOT_FOUND: the rollout does not exist. Metadata: `resource`."""

    BLOB_NOT_FOUND = "BLOB_NOT_FOUND"
    """NOT_FOUND: no blob is stored under the digest. Metadata: `digest`."""

    UPLOAD_NOT_FOUND = "UPLOAD_NOT_FOUND"
    """NOT_FOUND: the upload id is unknown, expired, cancelled or already
    finished; begin a new upload. Metadata: `upload_id`.
    """

    TOKEN_NOT_FOUND = "TOKEN_NOT_FOUND"
    """NOT_FOUND: the service account has no such token. Metadata: `resource`."""

    MODEL_ALREADY_EXISTS = "MODEL_ALREADY_EXISTS"
    """ALREADY_EXISTS: a model of that name exists. Metadata: `resource`."""

    UPLOAD_EXISTS = "UPLOAD_EXISTS"
    """ALREADY_EXISTS: the blob store already stages an upload under this id.
    Metadata: `upload_id`.
    """

    ETAG_MISMATCH = "ETAG_MISMATCH"
    """ABORTED: the resource changed since its etag was read, or a conditional
    write lost a race. Read it again and decide again. Metadata: `resource`.
    """

    UPLOAD_IN_PROGRESS = "UPLOAD_IN_PROGRESS"
    """ABORTED: another stream is writing this upload; retry when it has ended.
    Metadata: `upload_id`.
    """

    UPLOAD_IDLE = "UPLOAD_IDLE"
    """ABORTED: the upload stream sent nothing for the server's idle timeout
    (`modelreg serve --upload-idle-timeout`) and was ended; what it sent is
    kept: resume from `committed_offset` with a new stream. Metadata:
    `upload_id`, `committed_offset`.
    """

    UPLOAD_BUSY = "UPLOAD_BUSY"
    """ABORTED: the upload's staging is held by another stream, possibly in
    another server process. Metadata: `upload_id`.
    """

    INVALID_NAME = "INVALID_NAME"
    """INVALID_ARGUMENT: a resource name is malformed. Metadata: `field`."""

    INVALID_FIELD = "INVALID_FIELD"
    """INVALID_ARGUMENT: a field is missing, too long or not allowed here.
    Metadata: `field`.
    """

    INVALID_UPDATE_MASK = "INVALID_UPDATE_MASK"
    """INVALID_ARGUMENT: the update mask is empty or names an unknown path.
    Metadata: `field`.
    """

    INVALID_FILTER = "INVALID_FILTER"
    """INVALID_ARGUMENT: the list filter is not in the supported AIP-160
    subset. Metadata: `field`.
    """

    INVALID_REQUEST = "INVALID_REQUEST"
    """INVALID_ARGUMENT: the request's bytes are not a message of the method's
    request type: corrupt wire format, invalid UTF-8 in a string, or nesting
    past protobuf's limit.
    """

    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    """INVALID_ARGUMENT: the page token is forged, malformed or from another
    request. Metadata: `field`.
    """

    INVALID_PAGE_SIZE = "INVALID_PAGE_SIZE"
    """INVALID_ARGUMENT: the page size is negative. Metadata: `field`."""

    INVALID_LABELS = "INVALID_LABELS"
    """INVALID_ARGUMENT: too many labels, or a malformed label key or value.
    Metadata: `field`.
    """

    INVALID_ETAG = "INVALID_ETAG"
    """INVALID_ARGUMENT: the etag was not issued by this server. Metadata:
    `field`.
    """

    INVALID_STEPS = "INVALID_STEPS"
    """INVALID_ARGUMENT: rollout steps are not strictly increasing percentages
    ending at 100. Metadata: `field`.
    """

    INVALID_PERCENT = "INVALID_PERCENT"
    """INVALID_ARGUMENT: the percent to advance a rollout to is not above the
    current one or is over 100. Metadata: `field`.
    """

    INVALID_DIGEST = "INVALID_DIGEST"
    """INVALID_ARGUMENT: a digest is not of the form `sha256:<64 hex>`.
    Metadata: `field`.
    """

    INVALID_SIZE = "INVALID_SIZE"
    """INVALID_ARGUMENT: an upload's declared size is out of bounds (blob or
    manifest limit). Metadata: `field`.
    """

    INVALID_LENGTH = "INVALID_LENGTH"
    """INVALID_ARGUMENT: a download length is negative. Metadata: `field`."""

    INVALID_CHUNK = "INVALID_CHUNK"
    """INVALID_ARGUMENT: an upload chunk is empty or over 4 MiB, or a download
    asks for chunks over 4 MiB. Metadata: `field`, and on uploads the
    offsets of UNEXPECTED_OFFSET.
    """

    INVALID_CHUNK_SIZE = "INVALID_CHUNK_SIZE"
    """INVALID_ARGUMENT: the blob store was asked for a read chunk size outside
    its limits. Metadata: `field`.
    """

    INVALID_UPLOAD_ID = "INVALID_UPLOAD_ID"
    """INVALID_ARGUMENT: an upload id is not 1-128 characters of A-Z a-z 0-9
    . _ - starting with a letter or digit. Metadata: `field`.
    """

    INVALID_MANIFEST = "INVALID_MANIFEST"
    """INVALID_ARGUMENT: a manifest is not valid JSON of the manifest schema,
    or breaks its limits. Metadata: `field`.
    """

    UNEXPECTED_OFFSET = "UNEXPECTED_OFFSET"
    """INVALID_ARGUMENT: a chunk's offset is not the next byte the server
    expects (out of order, overlapping or a gap). Metadata: `field`,
    `expected_offset`, `committed_offset` (resume from there), `upload_id`.
    """

    CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
    """INVALID_ARGUMENT: a chunk's CRC32C does not match its data; resend from
    `committed_offset`. Metadata: as for UNEXPECTED_OFFSET.
    """

    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    """INVALID_ARGUMENT: the uploaded bytes do not hash to the declared digest
    (the upload is discarded, nothing becomes visible), or a resumed upload
    declares another digest. Metadata: `field`.
    """

    SIZE_MISMATCH = "SIZE_MISMATCH"
    """INVALID_ARGUMENT: more or fewer bytes than declared were uploaded (a
    finish before the last byte leaves the upload resumable from
    `committed_offset`), or a resumed upload declares another size.
    Metadata: `field`; on chunks and at finish also the offsets of
    UNEXPECTED_OFFSET.
    """

    PROTOCOL_VIOLATION = "PROTOCOL_VIOLATION"
    """INVALID_ARGUMENT: stream messages came in the wrong order (e.g. a chunk
    before the start). Metadata: `field`.
    """

    INVALID_POLICY = "INVALID_POLICY"
    """INVALID_ARGUMENT: a policy names an unknown role, a role twice, a role
    that grants nothing where it is bound (e.g. roles/admin below the
    registry), or too many members. Metadata: `field`.
    """

    INVALID_PRINCIPAL = "INVALID_PRINCIPAL"
    """INVALID_ARGUMENT: a principal or member is not `user:<id>`,
    `serviceAccount:<name>` (or, as a member, `allAuthenticatedUsers`).
    Metadata: `field`.
    """

    MODEL_HAS_VERSIONS = "MODEL_HAS_VERSIONS"
    """FAILED_PRECONDITION: the model still has versions; delete them first or
    use `force`. Metadata: `resource`.
    """

    VERSION_HAS_ALIASES = "VERSION_HAS_ALIASES"
    """FAILED_PRECONDITION: aliases point at the version; move them first or
    use `force`. Metadata: `resource`.
    """

    VERSION_NOT_READY = "VERSION_NOT_READY"
    """FAILED_PRECONDITION: the version is not READY (an alias target, a
    rollout candidate or a download needs one). Metadata: `resource`,
    `state`.
    """

    VERSION_NOT_APPROVED = "VERSION_NOT_APPROVED"
    """FAILED_PRECONDITION: a protected alias needs an APPROVED version.
    Metadata: `resource`, `alias`.
    """

    PROTECTED_ALIAS_TARGET = "PROTECTED_ALIAS_TARGET"
    """FAILED_PRECONDITION: protected aliases point at the version, or are being
    rolled out to it, so it cannot be rejected; move them first. Metadata:
    `resource`, `aliases` (comma-separated).
    """

    VERSION_NOT_PENDING = "VERSION_NOT_PENDING"
    """FAILED_PRECONDITION: the version already has its artifact. Metadata:
    `resource`, `state`.
    """

    VERSION_IN_ROLLOUT = "VERSION_IN_ROLLOUT"
    """FAILED_PRECONDITION: the version takes part in a running rollout; finish
    or roll it back first. Metadata: `resource`.
    """

    INVALID_STATE_TRANSITION = "INVALID_STATE_TRANSITION"
    """FAILED_PRECONDITION: the version cannot move from its state to the one
    asked for. Metadata: `resource`, `from`, `to`.
    """

    ROLLOUT_IN_PROGRESS = "ROLLOUT_IN_PROGRESS"
    """FAILED_PRECONDITION: the alias is being rolled out: advance, complete or
    roll back the rollout instead. Metadata: `resource`.
    """

    ROLLOUT_NOT_ACTIVE = "ROLLOUT_NOT_ACTIVE"
    """FAILED_PRECONDITION: the rollout is paused (or not active). Metadata:
    `resource`, `state`.
    """

    ROLLOUT_NOT_PAUSED = "ROLLOUT_NOT_PAUSED"
    """FAILED_PRECONDITION: only a paused rollout can be resumed. Metadata:
    `resource`, `state`.
    """

    ROLLOUT_FINISHED = "ROLLOUT_FINISHED"
    """FAILED_PRECONDITION: the rollout is completed or rolled back and can no
    longer change. Metadata: `resource`, `state`.
    """

    SAME_VERSION = "SAME_VERSION"
    """FAILED_PRECONDITION: the alias already points at the rollout's
    candidate. Metadata: `resource`.
    """

    MANIFEST_BLOB_MISSING = "MANIFEST_BLOB_MISSING"
    """FAILED_PRECONDITION: a file the manifest lists has not been uploaded (at
    its size). Metadata: `path`, `digest`.
    """

    UPLOAD_FINISHED = "UPLOAD_FINISHED"
    """FAILED_PRECONDITION: the upload is already committed, cancelled or
    closed. Metadata: `upload_id`.
    """

    NO_STORED_ARTIFACT = "NO_STORED_ARTIFACT"
    """FAILED_PRECONDITION: the version points at an external source, not at a
    stored artifact, so there is nothing to download. Metadata: `resource`.
    """

    NO_HISTORY = "NO_HISTORY"
    """FAILED_PRECONDITION: a point-in-time read needs the event history, which
    this server does not keep.
    """

    REVISION_COMPACTED = "REVISION_COMPACTED"
    """OUT_OF_RANGE: the events asked for are compacted away; list from
    `oldest_revision`, then watch from there. Metadata: `oldest_revision`.
    """

    OFFSET_OUT_OF_RANGE = "OFFSET_OUT_OF_RANGE"
    """OUT_OF_RANGE: a download offset is negative or past the end of the
    blob. Metadata: `offset`, `size` when past the end.
    """

    REVISION_IN_FUTURE = "REVISION_IN_FUTURE"
    """OUT_OF_RANGE: a watch asked to start past the next revision to be
    written; watch from at most `head_revision` + 1. Metadata:
    `head_revision`.
    """

    WATCH_TOO_SLOW = "WATCH_TOO_SLOW"
    """RESOURCE_EXHAUSTED: the watcher fell too far behind; watch again from
    `resume_revision`. Metadata: `resume_revision`.
    """

    BLOB_STORE_FULL = "BLOB_STORE_FULL"
    """RESOURCE_EXHAUSTED: the blob store is out of space."""

    TOO_MANY_TRANSFERS = "TOO_MANY_TRANSFERS"
    """RESOURCE_EXHAUSTED: the server already runs as many uploads or
    downloads as it allows; retry after `retry_delay_ms`. Metadata:
    `retry_delay_ms`, `limit`.
    """

    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
    """RESOURCE_EXHAUSTED: the response would be larger than the server sends
    in one message.
    """

    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    """RESOURCE_EXHAUSTED: the upload would take the model's stored bytes past
    its storage quota; nothing was stored. Free space (delete versions) or
    ask an owner to raise the quota. Metadata: `resource`, `limit` (the
    quota in bytes), `size` (bytes the upload declared), `used_bytes`.
    """

    TOO_MANY_OPEN_UPLOADS = "TOO_MANY_OPEN_UPLOADS"
    """RESOURCE_EXHAUSTED: the caller already has as many open (unfinished,
    unexpired) uploads as one principal may; finish or cancel one first.
    Metadata: `principal`, `limit`.
    """

    BLOB_COLLECTED = "BLOB_COLLECTED"
    """ABORTED: the blob this upload finished with was garbage-collected
    (unreferenced and past the grace period) while the upload was being
    published; upload it again. Metadata: `digest`.
    """

    IAM_PERMISSION_DENIED = "IAM_PERMISSION_DENIED"
    """PERMISSION_DENIED: the caller lacks the permission on the resource (the
    same answer whether or not the resource exists); the message names the
    roles that would grant it. Metadata: `permission`, `resource`,
    `principal`.
    """

    SEPARATION_OF_DUTIES = "SEPARATION_OF_DUTIES"
    """PERMISSION_DENIED: the model asks for separation of duties and the
    caller created the version it tries to review. Metadata: `resource`,
    `principal`.
    """

    CREDENTIALS_MISSING = "CREDENTIALS_MISSING"
    """UNAUTHENTICATED: the call carries no credentials (no bearer token, no
    client certificate) and the registry requires them.
    """

    CREDENTIALS_INVALID = "CREDENTIALS_INVALID"
    """UNAUTHENTICATED: the credentials do not verify: a malformed header or
    token, a bad signature, an unknown key, a disallowed algorithm, another
    issuer or audience, a token too large, an unknown service-account token.
    """

    CREDENTIALS_EXPIRED = "CREDENTIALS_EXPIRED"
    """UNAUTHENTICATED: the token has expired or is not valid yet."""

    CREDENTIALS_REVOKED = "CREDENTIALS_REVOKED"
    """UNAUTHENTICATED: the service-account token was revoked."""

    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    """UNAVAILABLE: the database cannot be reached; retry with backoff."""

    BLOB_STORE_UNAVAILABLE = "BLOB_STORE_UNAVAILABLE"
    """UNAVAILABLE: the blob store cannot be reached; retry with backoff."""

    NOT_READY = "NOT_READY"
    """UNAVAILABLE: the server is starting (waiting for its database); retry
    shortly.
    """

    SHUTTING_DOWN = "SHUTTING_DOWN"
    """UNAVAILABLE: the server is shutting down; watch again from
    `resume_revision` on another one. Metadata: `resume_revision`.
    """

    INTERNAL = "INTERNAL"
    """INTERNAL: a fault on the server; the message is generic and the details
    are only in the server's log, under `request_id`.
    """

    ENCRYPTION_KEY_MISSING = "ENCRYPTION_KEY_MISSING"
    """FAILED_PRECONDITION: the blob's data key is wrapped under a key-encryption
    key the server's keyring does not have; add that key to the keyring (or
    run `modelreg admin rewrap` while it is still there). Metadata: `digest`,
    `key_id`.
    """

    ENCRYPTION_KEY_MISMATCH = "ENCRYPTION_KEY_MISMATCH"
    """FAILED_PRECONDITION: the keyring has a key under the blob's key id, but it
    does not unwrap the blob's data key (a different key under the same id).
    Metadata: `digest`, `key_id`.
    """

    BLOB_DAMAGED = "BLOB_DAMAGED"
    """DATA_LOSS: stored bytes of an encrypted blob failed authentication
    (flipped, swapped between blobs, reordered or cut short); no byte of the
    damaged segment is served. Metadata: `digest`, `offset` (plaintext offset
    of the damaged segment).
    """

    REVISION_NOT_APPLIED = "REVISION_NOT_APPLIED"
    """UNAVAILABLE: the request asked (request metadata `modelreg-min-revision`)
    for a revision this server has not applied within its wait bound: a
    regional edge still catching up with the primary. Retry, or read from
    the primary. Metadata: `min_revision` (asked for), `head_revision`
    (applied here).
    """

    INVALID_MIN_REVISION = "INVALID_MIN_REVISION"
    """INVALID_ARGUMENT: request metadata `modelreg-min-revision` is not a
    decimal integer between 0 and 2^63-1. Metadata: `field`.
    """

    READ_ONLY_EDGE = "READ_ONLY_EDGE"
    """FAILED_PRECONDITION: a write was sent to a regional edge, which only
    serves reads; send it to the primary. Metadata: `primary` (its
    address), `region`.
    """

    NOT_WARM = "NOT_WARM"
    """FAILED_PRECONDITION: AdvanceRollout with `require_warm`, and some live
    regional edges do not hold the candidate's artifact yet; retry once they
    report it (see Rollout.warm_regions). Metadata: `regions` (the lagging
    ones, comma-separated), `resource` (the candidate version).
    """

    INVALID_SIGNATURE_BUNDLE = "INVALID_SIGNATURE_BUNDLE"
    """INVALID_ARGUMENT: a signature bundle is not a Sigstore bundle of the
    model-signing format: not JSON, over 6 MiB, over 20000 files, or a
    field missing or malformed. Nothing is stored. Metadata: `field`.
    """

    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    """INVALID_ARGUMENT: a well-formed signature bundle does not verify; the
    message says why. Nothing is stored. Metadata: `signature_problem`
    (UNKNOWN_KEY, BAD_SIGNATURE, UNTRUSTED_CHAIN, IDENTITY_MISMATCH,
    FILE_MISMATCH, UNSUPPORTED), `path` (the first differing file, for
    FILE_MISMATCH), `resource`.
    """

    SIGNATURE_REQUIRED = "SIGNATURE_REQUIRED"
    """FAILED_PRECONDITION: the alias requires a signed version and the target
    carries no signature that verifies under the model's trust policy; the
    message says what is missing. Metadata: `resource`, `alias`.
    """

    INVALID_TRUST_POLICY = "INVALID_TRUST_POLICY"
    """INVALID_ARGUMENT: a trust policy field is malformed: a key that is not
    a PEM public key, a chain that is not PEM certificates, an identity
    pattern that is not a regular expression, a list over its limit.
    Metadata: `field`.
    """

    SIGNATURE_LIMIT_REACHED = "SIGNATURE_LIMIT_REACHED"
    """FAILED_PRECONDITION: the version already carries as many signatures as
    allowed (32). Metadata: `resource`, `limit`.
    """


class ErrorMetadataKey(enum.StrEnum):
    """The keys of `google.rpc.ErrorInfo.metadata`: each value's name in lower
    case (REQUEST_ID is "request_id"). Values are strings.
    """

    REQUEST_ID = "request_id"
    """The request id, on every error; quote it to the operators."""

    FIELD = "field"
    """The request field at fault (INVALID_ARGUMENT), e.g. "model.labels"."""

    RESOURCE = "resource"
    """The name of the resource concerned, e.g. "models/fraud/versions/3"."""

    STATE = "state"
    """The state of the resource concerned, e.g. "PENDING_UPLOAD"."""

    FROM = "from"
    """The state a refused transition started from."""

    TO = "to"
    """The state a refused transition asked for."""

    ALIAS = "alias"
    """The alias id concerned, e.g. "production"."""

    DIGEST = "digest"
    """A blob digest, `sha256:<64 hex>`."""

    PATH = "path"
    """A file's path within a manifest."""

    OFFSET = "offset"
    """A byte offset that was asked for."""

    SIZE = "size"
    """A blob's size in bytes."""

    UPLOAD_ID = "upload_id"
    """The upload id concerned."""

    EXPECTED_OFFSET = "expected_offset"
    """The offset the server expected the next chunk at."""

    COMMITTED_OFFSET = "committed_offset"
    """How many bytes of the upload are durable: resume from there."""

    OLDEST_REVISION = "oldest_revision"
    """The oldest revision the event log still keeps."""

    RESUME_REVISION = "resume_revision"
    """The revision to watch again from."""

    PERMISSION = "permission"
    """The permission a denied call lacks, e.g. "aliases.set"."""

    PRINCIPAL = "principal"
    """The principal a decision concerns, e.g. "user:alice"."""

    ALIASES = "aliases"
    """Alias ids concerned, comma-separated."""

    HEAD_REVISION = "head_revision"
    """The newest revision of the event log."""

    RETRY_DELAY_MS = "retry_delay_ms"
    """How long to wait before retrying, in milliseconds."""

    LIMIT = "limit"
    """The limit that was reached."""

    USED_BYTES = "used_bytes"
    """Bytes a model's versions and open uploads already take."""

    KEY_ID = "key_id"
    """The id of a key-encryption key in the server's keyring."""

    MIN_REVISION = "min_revision"
    """The revision a request asked for (`modelreg-min-revision`)."""

    PRIMARY = "primary"
    """The primary's address, as a regional edge knows it (HOST:PORT)."""

    REGION = "region"
    """A region name, e.g. "eu-west"."""

    REGIONS = "regions"
    """Region names, comma-separated."""

    SIGNATURE_PROBLEM = "signature_problem"
    """Why a signature does not verify: UNKNOWN_KEY, BAD_SIGNATURE,
    UNTRUSTED_CHAIN, IDENTITY_MISMATCH, FILE_MISMATCH or UNSUPPORTED.
    """


STATUS_CODES: Mapping[ErrorReason, str] = MappingProxyType(
    {
        ErrorReason.MODEL_NOT_FOUND: "NOT_FOUND",
        ErrorReason.VERSION_NOT_FOUND: "NOT_FOUND",
        ErrorReason.ALIAS_NOT_FOUND: "NOT_FOUND",
        ErrorReason.ROLLOUT_NOT_FOUND: "NOT_FOUND",
        ErrorReason.BLOB_NOT_FOUND: "NOT_FOUND",
        ErrorReason.UPLOAD_NOT_FOUND: "NOT_FOUND",
        ErrorReason.TOKEN_NOT_FOUND: "NOT_FOUND",
        ErrorReason.MODEL_ALREADY_EXISTS: "ALREADY_EXISTS",
        ErrorReason.UPLOAD_EXISTS: "ALREADY_EXISTS",
        ErrorReason.ETAG_MISMATCH: "ABORTED",
        ErrorReason.UPLOAD_IN_PROGRESS: "ABORTED",
        ErrorReason.UPLOAD_IDLE: "ABORTED",
        ErrorReason.UPLOAD_BUSY: "ABORTED",
        ErrorReason.INVALID_NAME: "INVALID_ARGUMENT",
        ErrorReason.INVALID_FIELD: "INVALID_ARGUMENT",
        ErrorReason.INVALID_UPDATE_MASK: "INVALID_ARGUMENT",
        ErrorReason.INVALID_FILTER: "INVALID_ARGUMENT",
        ErrorReason.INVALID_REQUEST: "INVALID_ARGUMENT",
        ErrorReason.INVALID_PAGE_TOKEN: "INVALID_ARGUMENT",
        ErrorReason.INVALID_PAGE_SIZE: "INVALID_ARGUMENT",
        ErrorReason.INVALID_LABELS: "INVALID_ARGUMENT",
        ErrorReason.INVALID_ETAG: "INVALID_ARGUMENT",
        ErrorReason.INVALID_STEPS: "INVALID_ARGUMENT",
        ErrorReason.INVALID_PERCENT: "INVALID_ARGUMENT",
        ErrorReason.INVALID_DIGEST: "INVALID_ARGUMENT",
        ErrorReason.INVALID_SIZE: "INVALID_ARGUMENT",
        ErrorReason.INVALID_LENGTH: "INVALID_ARGUMENT",
        ErrorReason.INVALID_CHUNK: "INVALID_ARGUMENT",
        ErrorReason.INVALID_CHUNK_SIZE: "INVALID_ARGUMENT",
        ErrorReason.INVALID_UPLOAD_ID: "INVALID_ARGUMENT",
        ErrorReason.INVALID_MANIFEST: "INVALID_ARGUMENT",
        ErrorReason.UNEXPECTED_OFFSET: "INVALID_ARGUMENT",
        ErrorReason.CHECKSUM_MISMATCH: "INVALID_ARGUMENT",
        ErrorReason.DIGEST_MISMATCH: "INVALID_ARGUMENT",
        ErrorReason.SIZE_MISMATCH: "INVALID_ARGUMENT",
        ErrorReason.PROTOCOL_VIOLATION: "INVALID_ARGUMENT",
        ErrorReason.INVALID_POLICY: "INVALID_ARGUMENT",
        ErrorReason.INVALID_PRINCIPAL: "INVALID_ARGUMENT",
        ErrorReason.MODEL_HAS_VERSIONS: "FAILED_PRECONDITION",
        ErrorReason.VERSION_HAS_ALIASES: "FAILED_PRECONDITION",
        ErrorReason.VERSION_NOT_READY: "FAILED_PRECONDITION",
        ErrorReason.VERSION_NOT_APPROVED: "FAILED_PRECONDITION",
        ErrorReason.PROTECTED_ALIAS_TARGET: "FAILED_PRECONDITION",
        ErrorReason.VERSION_NOT_PENDING: "FAILED_PRECONDITION",
        ErrorReason.VERSION_IN_ROLLOUT: "FAILED_PRECONDITION",
        ErrorReason.INVALID_STATE_TRANSITION: "FAILED_PRECONDITION",
        ErrorReason.ROLLOUT_IN_PROGRESS: "FAILED_PRECONDITION",
        ErrorReason.ROLLOUT_NOT_ACTIVE: "FAILED_PRECONDITION",
        ErrorReason.ROLLOUT_NOT_PAUSED: "FAILED_PRECONDITION",
        ErrorReason.ROLLOUT_FINISHED: "FAILED_PRECONDITION",
        ErrorReason.SAME_VERSION: "FAILED_PRECONDITION",
        ErrorReason.MANIFEST_BLOB_MISSING: "FAILED_PRECONDITION",
        ErrorReason.UPLOAD_FINISHED: "FAILED_PRECONDITION",
        ErrorReason.NO_STORED_ARTIFACT: "FAILED_PRECONDITION",
        ErrorReason.NO_HISTORY: "FAILED_PRECONDITION",
        ErrorReason.REVISION_COMPACTED: "OUT_OF_RANGE",
        ErrorReason.OFFSET_OUT_OF_RANGE: "OUT_OF_RANGE",
        ErrorReason.REVISION_IN_FUTURE: "OUT_OF_RANGE",
        ErrorReason.WATCH_TOO_SLOW: "RESOURCE_EXHAUSTED",
        ErrorReason.BLOB_STORE_FULL: "RESOURCE_EXHAUSTED",
        ErrorReason.TOO_MANY_TRANSFERS: "RESOURCE_EXHAUSTED",
        ErrorReason.RESPONSE_TOO_LARGE: "RESOURCE_EXHAUSTED",
        ErrorReason.QUOTA_EXCEEDED: "RESOURCE_EXHAUSTED",
        ErrorReason.TOO_MANY_OPEN_UPLOADS: "RESOURCE_EXHAUSTED",
        ErrorReason.BLOB_COLLECTED: "ABORTED",
        ErrorReason.IAM_PERMISSION_DENIED: "PERMISSION_DENIED",
        ErrorReason.SEPARATION_OF_DUTIES: "PERMISSION_DENIED",
        ErrorReason.CREDENTIALS_MISSING: "UNAUTHENTICATED",
        ErrorReason.CREDENTIALS_INVALID: "UNAUTHENTICATED",
        ErrorReason.CREDENTIALS_EXPIRED: "UNAUTHENTICATED",
        ErrorReason.CREDENTIALS_REVOKED: "UNAUTHENTICATED",
        ErrorReason.STORAGE_UNAVAILABLE: "UNAVAILABLE",
        ErrorReason.BLOB_STORE_UNAVAILABLE: "UNAVAILABLE",
        ErrorReason.NOT_READY: "UNAVAILABLE",
        ErrorReason.SHUTTING_DOWN: "UNAVAILABLE",
        ErrorReason.INTERNAL: "INTERNAL",
        ErrorReason.ENCRYPTION_KEY_MISSING: "FAILED_PRECONDITION",
        ErrorReason.ENCRYPTION_KEY_MISMATCH: "FAILED_PRECONDITION",
        ErrorReason.BLOB_DAMAGED: "DATA_LOSS",
        ErrorReason.REVISION_NOT_APPLIED: "UNAVAILABLE",
        ErrorReason.INVALID_MIN_REVISION: "INVALID_ARGUMENT",
        ErrorReason.READ_ONLY_EDGE: "FAILED_PRECONDITION",
        ErrorReason.NOT_WARM: "FAILED_PRECONDITION",
        ErrorReason.INVALID_SIGNATURE_BUNDLE: "INVALID_ARGUMENT",
        ErrorReason.SIGNATURE_INVALID: "INVALID_ARGUMENT",
        ErrorReason.SIGNATURE_REQUIRED: "FAILED_PRECONDITION",
        ErrorReason.INVALID_TRUST_POLICY: "INVALID_ARGUMENT",
        ErrorReason.SIGNATURE_LIMIT_REACHED: "FAILED_PRECONDITION",
    }
)
"""The gRPC status code (its name) each reason comes with."""
