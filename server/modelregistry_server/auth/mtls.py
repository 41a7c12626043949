"""Client certificates as principals.

Under mutual TLS the server has already checked the certificate against
`--tls-client-ca`; the caller is `user:<common name>` of its subject (for
`CN=alice,O=ml` that is `user:alice`). A certificate without a usable
common name identifies nobody: with `--auth required` such a caller must
send a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..domain.principals import Principal, user

COMMON_NAME_KEY = "x509_common_name"


def certificate_principal(auth_context: Mapping[str, Iterable[bytes]]) -> Principal | None:
    values = list(auth_context.get(COMMON_NAME_KEY) or ())
    if not values:
        return None
    try:
        return user(bytes(values[0]).decode())
    except (UnicodeDecodeError, ValueError):
        return None
