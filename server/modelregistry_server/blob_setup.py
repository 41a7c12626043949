"""The blob store the configuration asks for: backend, encryption at rest, S3 SSE."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .blobs.base import BlobStore
from .blobs.encryption.stored_form import stored_form
from .blobs.factory import open_blob_store
from .blobs.s3_sse import ServerSideEncryption
from .config import ServerConfig
from .domain.errors import Unavailable

if TYPE_CHECKING:
    # The encrypting store and the keyring load `cryptography`: only a
    # server with --encryption-keyring imports them.
    from .blobs.encryption.keyring import KeyWrapper

log = logging.getLogger("modelreg.encryption")


def keys_from(config: ServerConfig) -> KeyWrapper | None:
    """The keyring of `--encryption-keyring`, or None; ValueError: cannot start."""
    if config.encryption_keyring is None:
        return None
    from .blobs.encryption.keyring import load_keyring

    return load_keyring(config.encryption_keyring)


def sse_from(config: ServerConfig) -> ServerSideEncryption | None:
    if not config.s3_sse:
        if config.s3_sse_kms_key_id:
            raise ValueError("--s3-sse-kms-key-id needs --s3-sse aws:kms")
        return None
    return ServerSideEncryption(config.s3_sse, config.s3_sse_kms_key_id)


async def open_configured_blob_store(config: ServerConfig) -> BlobStore:
    """The store; ValueError when it holds encrypted blobs and no keyring is given.

    A store is marked when a server with a keyring first opens it, so that a
    server started without one refuses to serve ciphertext as artifacts.
    """
    keys = keys_from(config)
    store = await open_blob_store(
        config.resolved_blob_store(), config.s3_endpoint_url, keys=keys, sse=sse_from(config)
    )
    try:
        await _check_mark(store, keys is not None)
    except BaseException:
        await store.close()
        raise
    if keys is None:
        log.warning("blobs are stored unencrypted (no --encryption-keyring)")
    return store


async def _check_mark(store: BlobStore, encrypting: bool) -> None:
    backing = store
    if encrypting:  # the store is encrypting: the mark goes in the one below
        from .blobs.encryption.encrypted_store import EncryptedBlobStore

        if isinstance(store, EncryptedBlobStore):
            backing = store.inner
    try:
        form = await stored_form(backing)
        if encrypting:
            await form.mark_encrypted()
        elif await form.is_encrypted():
            raise ValueError(
                "the blob store holds encrypted blobs: start with --encryption-keyring"
            )
    except Unavailable:
        log.warning("could not check whether the blob store is encrypted: it is unreachable")
