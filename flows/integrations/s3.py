"""Artifact storage by URI: `file://` (and plain paths) and `s3://`, used by every feature.

Importing this module registers the S3 backend with `svd_core.storage`, so library code that reads and
writes through `svd_core.storage.store_for(uri)` works on S3 without importing boto3 itself.

- Retries: botocore's standard retry mode plus our own bounded retry around each call for transient
  errors (throttling, 5xx, connection resets).
- Atomic publish: uploads go to a temporary key under the same prefix and are copied to the final key
  only once complete, then the temporary key is removed; a reader never sees a partial object and an
  interrupted upload leaves nothing under the final key.
- Credentials come from the environment or AWS profiles (boto3's chain) and are never logged.
"""

from __future__ import annotations

import functools
import io
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from svd_core import storage as svd_io
from svd_core.errors import StorageError

log = logging.getLogger("svd.storage")
T = TypeVar("T")

TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}
TEMP_PREFIX = "_svdtmp"


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


class S3Store:
    """`s3://bucket/key` backend (AWS, MinIO, or the local stack's moto server by endpoint URL)."""

    def __init__(self, endpoint_url: str | None = None, attempts: int = 4, backoff_s: float = 0.2):
        from flows.settings import load_settings

        self.endpoint_url = (
            endpoint_url if endpoint_url is not None else (load_settings().s3_endpoint_url or None)
        )
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=5, read_timeout=60
            ),
        )

    # --- error handling -------------------------------------------------------------------------
    def _call(self, what: str, uri: str, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in TRANSIENT_CODES and attempt < self.attempts:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                    continue
                raise self._explain(what, uri, code, exc) from None
            except NoCredentialsError:
                raise StorageError(
                    f"{what} {uri}: no AWS credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
                    " (after `svd stack up` they come from .svd/stack.env)"
                ) from None
            except (EndpointConnectionError, BotoCoreError) as exc:
                if attempt < self.attempts:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                    continue
                raise StorageError(
                    f"{what} {uri}: cannot reach S3 at {self.endpoint_url or 'AWS'} ({exc.__class__.__name__}); "
                    "start the local stack with `svd stack up` or fix SVD_S3_ENDPOINT_URL"
                ) from None
        raise AssertionError("unreachable")

    def _explain(self, what: str, uri: str, code: str, exc: ClientError) -> StorageError:
        bucket = urlparse(uri).netloc
        if code == "NoSuchBucket":
            return StorageError(f"{what} {uri}: bucket {bucket!r} does not exist; create it or fix the URI")
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(f"{what} {uri}: no such object")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(
                f"{what} {uri}: access denied ({code}); check the credentials for bucket {bucket!r}"
            )
        return StorageError(f"{what} {uri}: S3 error {code or exc.__class__.__name__}")

    # --- ObjectStore --------------------------------------------------------------------------------
    def read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        return self._call("read", uri, lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def write_bytes(self, uri: str, data: bytes) -> None:
        self._atomic_upload(
            uri, lambda bucket, key: self.client.upload_fileobj(io.BytesIO(data), bucket, key)
        )

    def put_file(self, local_file: str | Path, uri: str) -> None:
        src = Path(local_file)
        if not src.is_file():
            raise StorageError(f"cannot upload {src}: no such file")
        self._atomic_upload(uri, lambda bucket, key: self.client.upload_file(str(src), bucket, key))

    def put_fileobj(self, fileobj: Any, uri: str) -> None:
        self._atomic_upload(uri, lambda bucket, key: self.client.upload_fileobj(fileobj, bucket, key))

    def _atomic_upload(self, uri: str, upload: Callable[[str, str], None]) -> None:
        bucket, key = split_s3_uri(uri)
        if not key or key.endswith("/"):
            raise StorageError(f"write {uri}: the URI names a prefix, not an object key")
        parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        tmp_key = f"{parent}{TEMP_PREFIX}/{uuid.uuid4().hex}"
        try:
            self._call("write", uri, lambda: upload(bucket, tmp_key))
            source = {"Bucket": bucket, "Key": tmp_key}
            self._call("write", uri, lambda: self.client.copy(source, bucket, key))
        finally:
            try:
                self.client.delete_object(Bucket=bucket, Key=tmp_key)
            except (ClientError, BotoCoreError):  # best effort: temp keys are ignored by list()
                log.warning("could not remove temporary object s3://%s/%s", bucket, tmp_key)

    def get_file(self, uri: str, dest: str | Path) -> Path:
        bucket, key = split_s3_uri(uri)
        dest = Path(dest)
        with svd_io.atomic_local_write(dest) as tmp:
            self._call("download", uri, lambda: self.client.download_file(bucket, key, str(tmp)))
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

    def list(self, prefix_uri: str) -> list[str]:
        bucket, prefix = split_s3_uri(prefix_uri)

        def _list() -> list[str]:
            out = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if f"/{TEMP_PREFIX}/" not in f"/{obj['Key']}":
                        out.append(f"s3://{bucket}/{obj['Key']}")
            return out

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
