"""Content-addressed blob storage for artifacts: the interface, local and S3."""

from .base import BlobInfo, BlobStore, Upload, UploadInfo
from .factory import open_blob_store

__all__ = ["BlobInfo", "BlobStore", "Upload", "UploadInfo", "open_blob_store"]
