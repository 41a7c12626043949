"""Server reflection that keeps the proto comments.

The descriptors compiled into generated Python code carry no comments, so the
stock reflection service makes `grpcurl describe` show bare messages. Our own
proto files are served from the descriptor sets written beside this module by
`scripts/gen_protos.py` (comments included); anything else (health, the
well-known types) comes from the default descriptor pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

DESCRIPTORS = Path(__file__).resolve().parent / "descriptors"


def commented_files(directory: Path = DESCRIPTORS) -> dict[str, bytes]:
    """Serialized FileDescriptorProtos with source info, by proto file name."""
    files: dict[str, bytes] = {}
    for path in sorted(directory.glob("*.binpb")):
        fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
        for proto in fds.file:
            files[proto.name] = proto.SerializeToString()
    return files


def _not_found(request: reflection_pb2.ServerReflectionRequest) -> Any:
    return reflection_pb2.ServerReflectionResponse(
        error_response=reflection_pb2.ErrorResponse(
            error_code=grpc.StatusCode.NOT_FOUND.value[0],
            error_message=b"not found",
        ),
        original_request=request,
    )


class CommentedReflection(reflection_pb2_grpc.ServerReflectionServicer):  # type: ignore[misc]
    """grpc.reflection.v1alpha over the default pool, with comments where we have them."""

    def __init__(
        self,
        service_names: Iterable[str],
        commented: dict[str, bytes],
        pool: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self._services = tuple(sorted(service_names))
        self._commented = commented
        self._pool = pool or descriptor_pool.Default()

    def _serialize(self, file: FileDescriptor) -> bytes:
        raw = self._commented.get(file.name)
        if raw is not None:
            return raw
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        return bytes(proto.SerializeToString())

    def _files(self, request: Any, file: FileDescriptor) -> Any:
        seen: dict[str, FileDescriptor] = {}
        pending = [file]
        while pending:
            current = pending.pop()
            if current.name not in seen:
                seen[current.name] = current
                pending.extend(current.dependencies)
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=[self._serialize(f) for f in seen.values()]
            ),
            original_request=request,
        )

    def _answer(self, request: Any) -> Any:
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                return reflection_pb2.ServerReflectionResponse(
                    list_services_response=reflection_pb2.ListServiceResponse(
                        service=[
                            reflection_pb2.ServiceResponse(name=name) for name in self._services
                        ]
                    ),
                    original_request=request,
                )
            if kind == "file_by_filename":
                return self._files(request, self._pool.FindFileByName(request.file_by_filename))
            if kind == "file_containing_symbol":
                return self._files(
                    request, self._pool.FindFileContainingSymbol(request.file_containing_symbol)
                )
            if kind == "all_extension_numbers_of_type":
                message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(ext.number for ext in self._pool.FindAllExtensions(message))
                return reflection_pb2.ServerReflectionResponse(
                    all_extension_numbers_response=reflection_pb2.ExtensionNumberResponse(
                        base_type_name=message.full_name, extension_number=numbers
                    ),
                    original_request=request,
                )
        except KeyError:
            pass
        # Unknown symbols and extensions (this API defines none).
        return _not_found(request)

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterable[Any], context: Any
    ) -> AsyncIterator[Any]:
        async for request in request_iterator:
            yield self._answer(request)


def enable(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        CommentedReflection(service_names, commented_files()), server
    )
