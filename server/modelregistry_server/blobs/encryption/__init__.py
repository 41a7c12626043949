"""Encryption at rest for any blob store: envelope encryption in fixed-size segments.

`keyring` holds the key-encryption keys behind the `KeyWrapper` interface,
`segments` is the stored format, `encrypting_staging` encrypts an upload on its
way into a backend's staging, `encrypted_store` decrypts on the way out, and
`rewrap` moves data keys to the primary key without touching content.
"""
