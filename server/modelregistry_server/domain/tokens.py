"""Service-account tokens as the registry keeps them (the secret is not here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceAccountToken:
    token_id: str
    service_account: str
    # sha256 over the id and the secret; see auth.service_tokens.
    secret_hash: str
    description: str
    # Who issued it.
    creator: str
    create_time_us: int
    # 0: never expires.
    expire_time_us: int
    # 0: not revoked.
    revoke_time_us: int

    @property
    def name(self) -> str:
        return f"serviceAccounts/{self.service_account}/tokens/{self.token_id}"

    def expired(self, now_us: int) -> bool:
        return self.expire_time_us != 0 and now_us >= self.expire_time_us
