"""The AWS SDK, loaded without the pyOpenSSL shim botocore does not need.

botocore imports urllib3's pyOpenSSL module only to name the `SSLContext`
class it then uses, and that name is the standard library's class whether
the import succeeds or not (the shim keeps the original as
`orig_util_SSLContext`). Where pyOpenSSL is installed (model signing brings
it), the import alone loads pyOpenSSL and the `cryptography` bindings: about
9 MB of resident memory in every server with an S3 store, for nothing. So
botocore is imported once with that one module hidden; any later import of
it elsewhere works as usual.
"""

from __future__ import annotations

import importlib
import sys

_SHIM = "urllib3.contrib.pyopenssl"


def load() -> None:
    """Import botocore's HTTP layer (idempotent; call before aiobotocore)."""
    if "botocore.httpsession" in sys.modules or _SHIM in sys.modules:
        return
    sys.modules[_SHIM] = None  # type: ignore[assignment]  # makes its import fail
    try:
        importlib.import_module("botocore.httpsession")
    finally:
        del sys.modules[_SHIM]
