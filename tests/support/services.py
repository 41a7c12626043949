"""What a test does when a service it needs is absent.

Locally it is skipped with a reason, so the suite runs on a bare laptop; in
CI (MODELREG_TEST_REQUIRE=1) it fails, so a missing service cannot hide as a
row of skips.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def require(reason: str) -> NoReturn:
    """Skip (locally) or fail (MODELREG_TEST_REQUIRE=1) for a missing service."""
    if os.environ.get("MODELREG_TEST_REQUIRE") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)
