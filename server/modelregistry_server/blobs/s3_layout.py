"""Where an S3 blob store keeps things, and how staged segments become one object.

Under the store's prefix:

    uploads/<upload id>/begin                  marker: the upload exists; holds
                                               its segment size in decimal
    uploads/<upload id>/seg-<start:016d>       staged bytes [start, start + size)
    blobs/sha256/<hex>                         published blobs

An in-progress multipart upload cannot be read back, so it cannot rebuild the
sha256 state after a restart. Staged bytes therefore live in ordinary objects
("segments") that a resumed upload lists and reads back. A segment's key
carries its start offset, so the listing alone gives the layout: segments
chain from offset 0, and the end of the chain is the durable offset.

`write()` seals a segment each time `segment_size` bytes are buffered;
the size is chosen per upload by the blob's declared size (see
`segment_size_for`) and kept in the marker for a resume.
`flush()` seals whatever is buffered, however small. Commit composes the
final object server side with UploadPartCopy, one part per segment. S3 wants
every part but the last to be at least 5 MiB. A flush often seals less: the
staging keeps such a short segment's bytes and rewrites the segment longer
with the next append (same key, so the listing never shows both). Short
segments survive only a restart in between; a compose reads runs of them
back and uploads them as one part of at least 5 MiB.
A blob of one segment is a plain CopyObject; an empty blob a plain PutObject.
"""

from __future__ import annotations

from dataclasses import dataclass

# S3's floor for every multipart part but the last.
MIN_PART_SIZE = 5 * 1024 * 1024
# S3 takes at most 10,000 parts per object. Segments are planned to stay
# within PLANNED_SEGMENTS, leaving room for the short ones flushes seal (and
# for the record overhead of encryption at rest).
MAX_PARTS = 10_000
PLANNED_SEGMENTS = 9_000
# An upload holds about two segments in memory (one being sent, one filling),
# so this is most of an upload's footprint: 8 MiB serves blobs up to about
# 75 GB; larger blobs get larger segments.
DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024
_MIB = 1024 * 1024
_SEGMENT = "seg-"


@dataclass(frozen=True)
class Segment:
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


class Layout:
    """Object keys for one bucket prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        base = f"{self.prefix}/" if self.prefix else ""
        self.uploads = f"{base}uploads/"
        self.blobs = f"{base}blobs/sha256/"

    def blob(self, hex_digest: str) -> str:
        return self.blobs + hex_digest

    def upload(self, upload_id: str) -> str:
        return f"{self.uploads}{upload_id}/"

    def marker(self, upload_id: str) -> str:
        return self.upload(upload_id) + "begin"

    def segment(self, upload_id: str, start: int) -> str:
        return f"{self.upload(upload_id)}{_SEGMENT}{start:016d}"

    def parse(self, key: str) -> tuple[str, Segment | None] | None:
        """(upload id, segment or None for the marker) for a key under uploads/."""
        if not key.startswith(self.uploads):
            return None
        upload_id, _, name = key[len(self.uploads) :].partition("/")
        if name == "begin":
            return upload_id, None
        if name.startswith(_SEGMENT) and name[len(_SEGMENT) :].isdigit():
            return upload_id, Segment(int(name[len(_SEGMENT) :]), -1)
        return None


def contiguous(segments: list[Segment]) -> tuple[list[Segment], list[Segment]]:
    """(the chain from offset 0, the rest). The rest can only come from a bug or a
    hand edit; it is deleted, never trusted."""
    chain: list[Segment] = []
    end = 0
    rest: list[Segment] = []
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start == end and seg.size > 0:
            chain.append(seg)
            end = seg.end
        else:
            rest.append(seg)
    return chain, rest


def segment_size_for(size_hint: int, default: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment size for a blob of about `size_hint` bytes (0: unknown):
    `default`, or the next whole MiB that keeps it within PLANNED_SEGMENTS."""
    need = -(-max(size_hint, 0) // PLANNED_SEGMENTS)
    return max(default, -(-need // _MIB) * _MIB)


def plan_parts(segments: list[Segment], min_part: int = MIN_PART_SIZE) -> list[list[Segment]]:
    """Group segments into multipart parts: every part but the last >= `min_part`.

    A part of one segment is copied server side; a part of several is read back
    and uploaded (at most `min_part` plus one segment in memory).
    """
    parts: list[list[Segment]] = []
    group: list[Segment] = []
    size = 0
    for seg in segments:
        if not group and seg.size >= min_part:
            parts.append([seg])
            continue
        group.append(seg)
        size += seg.size
        if size >= min_part:
            parts.append(group)
            group, size = [], 0
    if group:
        # The last part may be small.
        parts.append(group)
    return parts
