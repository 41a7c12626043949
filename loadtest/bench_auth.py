"""Authentication for the control-plane benchmark: a test identity provider
(keys made per run), the server flags that trust it, and callers' tokens.

The benchmarked caller is `user:bench`, owner on the registry: every read
and write it makes passes through token verification (cached per token) and
a policy decision (cached per principal, permission and resource), as a real
caller's would. Seeding runs as the bootstrap admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import common  # noqa: F401  # puts tests/support on the path
import grpc
from modelregistry.v1 import access_service_pb2 as acc
from modelregistry.v1 import access_service_pb2_grpc
from support.jwt_issuer import AUDIENCE, ISSUER, Issuer

ADMIN = "bench-admin"
CALLER = "bench"
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BenchAuth:
    issuer: Issuer
    jwks: Path

    def flags(self) -> list[str]:
        return [
            *("--auth", "required", "--jwt-jwks", str(self.jwks)),
            *("--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE),
            *("--bootstrap-admin", f"user:{ADMIN}"),
        ]

    def metadata(self, who: str) -> Metadata:
        return (("authorization", f"Bearer {self.issuer.token(who)}"),)

    async def grant_caller(self, address: str) -> None:
        """roles/owner on the registry for the benchmarked caller."""
        policy = acc.Policy(bindings=[acc.Binding(role="roles/owner", members=[f"user:{CALLER}"])])
        async with grpc.aio.insecure_channel(address) as channel:
            stub = access_service_pb2_grpc.AccessServiceStub(channel)
            await stub.SetIamPolicy(
                acc.SetIamPolicyRequest(resource="registry", policy=policy),
                metadata=self.metadata(ADMIN),
            )


def bench_auth(tmp: Path) -> BenchAuth:
    issuer = Issuer()
    return BenchAuth(issuer, issuer.write_jwks(tmp / "jwks.json"))
