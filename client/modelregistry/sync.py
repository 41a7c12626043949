"""`SyncRegistryClient`: the same client for scripts and notebooks, blocking.

It drives a `RegistryClient` on a private event loop in a daemon thread,
so it shares the async client's retries and error mapping exactly and works
whether or not the calling thread already runs an event loop of its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from .client import RegistryClient
from .transport import DEFAULT_TARGET, Pem, RetryPolicy

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[RegistryClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncRegistryClient, P], T]:
    """The blocking form of an async client method."""

    def call(self: SyncRegistryClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._client, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def _iterating(
    method: Callable[Concatenate[RegistryClient, P], AsyncIterator[T]],
) -> Callable[Concatenate[SyncRegistryClient, P], Iterator[T]]:
    """The blocking form of an async client listing: pages are fetched as iterated."""

    def call(self: SyncRegistryClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._iterate(method(self._client, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class SyncRegistryClient:
    """Blocking client: takes the same arguments as `RegistryClient`.

    Use it as a context manager or call `close()`, which also stops the
    private loop's thread.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        tls: bool = False,
        root_ca: Pem | None = None,
        client_cert: Pem | None = None,
        client_key: Pem | None = None,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="modelreg-client", daemon=True
        )
        self._thread.start()
        try:
            self._client = RegistryClient(
                target,
                tls=tls,
                root_ca=root_ca,
                client_cert=client_cert,
                client_key=client_key,
                timeout=timeout,
                retry=retry,
                options=options,
                token=token,
                token_file=token_file,
            )
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel and stops the loop; safe to call twice."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> list[T]:
            try:
                return [await anext(items)]
            except StopAsyncIteration:
                return []

        while batch := self._run(step()):
            yield batch[0]

    create_model = _blocking(RegistryClient.create_model)
    get_model = _blocking(RegistryClient.get_model)
    list_models_page = _blocking(RegistryClient.list_models_page)
    list_models = _iterating(RegistryClient.list_models)
    update_model = _blocking(RegistryClient.update_model)
    delete_model = _blocking(RegistryClient.delete_model)

    create_model_version = _blocking(RegistryClient.create_model_version)
    get_model_version = _blocking(RegistryClient.get_model_version)
    list_model_versions_page = _blocking(RegistryClient.list_model_versions_page)
    list_model_versions = _iterating(RegistryClient.list_model_versions)
    update_model_version = _blocking(RegistryClient.update_model_version)
    delete_model_version = _blocking(RegistryClient.delete_model_version)

    set_alias = _blocking(RegistryClient.set_alias)
    get_alias = _blocking(RegistryClient.get_alias)
    list_aliases_page = _blocking(RegistryClient.list_aliases_page)
    list_aliases = _iterating(RegistryClient.list_aliases)
    delete_alias = _blocking(RegistryClient.delete_alias)
    resolve_alias = _blocking(RegistryClient.resolve_alias)

    push = _blocking(RegistryClient.push)
    pull = _blocking(RegistryClient.pull)

    get_iam_policy = _blocking(RegistryClient.get_iam_policy)
    set_iam_policy = _blocking(RegistryClient.set_iam_policy)
    grant = _blocking(RegistryClient.grant)
    revoke_role = _blocking(RegistryClient.revoke_role)
    test_iam_permissions = _blocking(RegistryClient.test_iam_permissions)
    create_service_account_token = _blocking(RegistryClient.create_service_account_token)
    list_service_account_tokens = _iterating(RegistryClient.list_service_account_tokens)
    revoke_service_account_token = _blocking(RegistryClient.revoke_service_account_token)
