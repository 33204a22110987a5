"""Artifact storage by URI: `file://` (and plain paths) and `s3://`, used by every feature.

Importing this module registers the S3 backend with `svd_core.storage`, so library code that reads and
writes through `svd_core.storage.store_for(uri)` works on S3 without importing boto3 itself.

One layer over boto3, which already does what a storage layer needs:
- Retries: botocore's standard retry mode (throttling, 5xx, connection errors, with backoff); nothing
  retries on top of it.
- Atomic writes: a PUT is atomic in S3 and a multipart upload becomes visible only when completed (boto3
  aborts it on failure), so a reader never sees a partial object. Large files go up in parts
  (`TransferConfig`: 64 MB parts above 64 MB, several in parallel).
- Races: `create` writes only when the key does not exist yet (a conditional PUT, `If-None-Match: *`).
- Endpoint and credentials: `SVD_S3_ENDPOINT_URL`/`AWS_ENDPOINT_URL_S3`, else boto3's own chain
  (environment, AWS profiles, `~/.aws/config`); credentials are never logged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import boto3
from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from svd_core import storage as svd_io
from svd_core.errors import StorageError

T = TypeVar("T")
MB = 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=64 * MB, multipart_chunksize=64 * MB, max_concurrency=4)
"""Multipart above 64 MB (video shards, checkpoints), four parts in flight."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


class S3Store:
    """`s3://bucket/key` backend (AWS, MinIO, or the local stack's moto server by endpoint URL)."""

    def __init__(self, endpoint_url: str | None = None, attempts: int = 5):
        from flows.settings import load_settings

        self.endpoint_url = (
            endpoint_url if endpoint_url is not None else (load_settings().s3_endpoint_url or None)
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=5, read_timeout=60
            ),
        )

    def _call(self, what: str, uri: str, fn: Callable[[], T]) -> T:
        """Run one boto3 call (botocore retried it already) and turn its failure into a StorageError."""
        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise self._explain(what, uri, code, exc) from None
        except NoCredentialsError:
            raise StorageError(
                f"{what} {uri}: no AWS credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
                " (after `svd stack up` they come from .svd/stack.env)"
            ) from None
        except (S3UploadFailedError, S3TransferFailedError) as exc:  # a multipart upload, aborted by boto3
            raise StorageError(f"{what} {uri}: transfer failed ({exc}); nothing was written") from None
        except BotoCoreError as exc:
            raise StorageError(
                f"{what} {uri}: cannot reach S3 at {self.endpoint_url or 'AWS'} ({exc.__class__.__name__}); "
                "start the local stack with `svd stack up` or fix SVD_S3_ENDPOINT_URL / AWS_ENDPOINT_URL_S3"
            ) from None

    def _explain(self, what: str, uri: str, code: str, exc: ClientError) -> StorageError:
        bucket = urlparse(uri).netloc
        if code == "NoSuchBucket":
            return StorageError(f"{what} {uri}: bucket {bucket!r} does not exist; create it or fix the URI")
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(f"{what} {uri}: no such object")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return StorageError(f"{what} {uri}: the object already exists (another writer was first)")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(
                f"{what} {uri}: access denied ({code}); check the credentials for bucket {bucket!r}"
            )
        return StorageError(f"{what} {uri}: S3 error {code or exc.__class__.__name__}")

    @staticmethod
    def _object_key(uri: str) -> tuple[str, str]:
        bucket, key = split_s3_uri(uri)
        if not key or key.endswith("/"):
            raise StorageError(f"write {uri}: the URI names a prefix, not an object key")
        return bucket, key

    # --- ObjectStore --------------------------------------------------------------------------------
    def read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        return self._call("read", uri, lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def read_range(self, uri: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (fewer where it ends first): one ranged GET, so training reads a
        clip out of a shard without fetching the shard."""
        if end <= start:
            return b""
        bucket, key = split_s3_uri(uri)

        def get() -> bytes:
            try:
                body = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}")[
                    "Body"
                ]
                return bytes(body.read())
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # the range starts past the end of the object
                raise

        return self._call("read", uri, get)

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self._object_key(uri)
        self._call("write", uri, lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data))

    def create(self, uri: str, data: bytes) -> None:
        """Write `uri` only if no object is there yet; StorageError when another writer was first."""
        bucket, key = self._object_key(uri)
        put = functools.partial(self.client.put_object, Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        self._call("create", uri, put)

    def put_file(self, local_file: str | Path, uri: str) -> None:
        src = Path(local_file)
        if not src.is_file():
            raise StorageError(f"cannot upload {src}: no such file")
        bucket, key = self._object_key(uri)
        self._call("write", uri, lambda: self.client.upload_file(str(src), bucket, key, Config=TRANSFER))

    def put_fileobj(self, fileobj: Any, uri: str) -> None:
        bucket, key = self._object_key(uri)
        self._call("write", uri, lambda: self.client.upload_fileobj(fileobj, bucket, key, Config=TRANSFER))

    def get_file(self, uri: str, dest: str | Path) -> Path:
        bucket, key = split_s3_uri(uri)
        dest = Path(dest)
        with svd_io.atomic_local_write(dest) as tmp:
            self._call(
                "download", uri, lambda: self.client.download_file(bucket, key, str(tmp), Config=TRANSFER)
            )
        return dest

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3_uri(uri)
        try:
            self._call("stat", uri, lambda: self.client.head_object(Bucket=bucket, Key=key))
            return True
        except StorageError as exc:
            if "no such object" in str(exc):
                return bool(self.list(uri.rstrip("/") + "/"))
            raise

    def stat(self, uri: str) -> dict[str, Any] | None:
        """Size and ETag of the object (one HEAD, no download), or None when there is none; the LVD build
        recognises a finished source by them (svd_core.curation.resume)."""
        bucket, key = split_s3_uri(uri)
        try:
            head = self._call("stat", uri, lambda: self.client.head_object(Bucket=bucket, Key=key))
        except StorageError as exc:
            if "no such object" in str(exc):
                return None
            raise
        return {"size": int(head["ContentLength"]), "etag": str(head.get("ETag", "")).strip('"')}

    def list(self, prefix_uri: str) -> list[str]:
        bucket, prefix = split_s3_uri(prefix_uri)

        def _list() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [f"s3://{bucket}/{obj['Key']}" for page in pages for obj in page.get("Contents", [])]

        return sorted(self._call("list", prefix_uri, _list))

    def delete(self, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        keys = (
            [split_s3_uri(u)[1] for u in self.list(uri.rstrip("/") + "/")]
            if not key or key.endswith("/")
            else []
        )
        keys = keys or [key]
        for chunk in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[chunk : chunk + 1000]]
            self._call(
                "delete",
                uri,
                functools.partial(self.client.delete_objects, Bucket=bucket, Delete={"Objects": objects}),
            )

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError:
            self._call("create bucket", f"s3://{bucket}", lambda: self.client.create_bucket(Bucket=bucket))


svd_io.register_store("s3", S3Store)

# Re-exported so callers use one module for all storage by URI.
store_for = svd_io.store_for
read_bytes = svd_io.read_bytes
write_bytes = svd_io.write_bytes
put_file = svd_io.put_file
exists = svd_io.exists
list_uris = svd_io.list_uris
join_uri = svd_io.join_uri
local_copy = svd_io.local_copy
