"""Storage by URI: file:// and s3:// round trips, atomic writes, clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from svd_core import storage as svd_io
from svd_core.errors import StorageError


def test_file_round_trip_and_listing(tmp_path: Path) -> None:
    base = f"file://{tmp_path}/store"
    svd_io.write_bytes(svd_io.join_uri(base, "a/b.bin"), b"hello")
    svd_io.write_bytes(str(tmp_path / "store" / "c.txt"), b"plain path works too")
    assert svd_io.read_bytes(f"{base}/a/b.bin") == b"hello"
    assert svd_io.list_uris(base) == [f"{base}/a/b.bin", f"{base}/c.txt"]
    assert svd_io.exists(f"{base}/a/b.bin") and not svd_io.exists(f"{base}/nope")
    with svd_io.local_copy(f"{base}/c.txt") as path:
        assert path.read_bytes() == b"plain path works too"


def test_interrupted_local_write_leaves_nothing_visible(tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.parquet"
    svd_io.write_bytes(str(target), b"version 1")
    with pytest.raises(RuntimeError), svd_io.atomic_local_write(target) as tmp:
        tmp.write_bytes(b"half of version 2")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"version 1"
    assert [p.name for p in target.parent.iterdir()] == ["table.parquet"]


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [("gs://bucket/key", "no storage backend for gs://"), ("file:///definitely/not/here", "no such file")],
)
def test_bad_uri_errors_name_the_uri(uri: str, fragment: str) -> None:
    with pytest.raises(StorageError, match=fragment) as info:
        svd_io.read_bytes(uri)
    assert uri.split("://")[1].split("/")[0] in str(info.value) or "gs://" in str(info.value)


@pytest.mark.integration
class TestS3:
    @pytest.fixture(autouse=True)
    def _s3_env(self, stack, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in stack.urls.items():
            monkeypatch.setenv(key, value)
        import flows.integrations.s3  # registers s3://

        svd_io.register_store("s3", flows.integrations.s3.S3Store)  # fresh client for this stack's endpoint

    def test_round_trip(self, tmp_path: Path) -> None:
        uri = "s3://svd-data/tests/round/trip.bin"
        payload = bytes(range(256)) * 1000
        svd_io.write_bytes(uri, payload)
        assert svd_io.read_bytes(uri) == payload
        local = tmp_path / "f.txt"
        local.write_text("file upload")
        svd_io.put_file(local, "s3://svd-data/tests/round/f.txt")
        assert svd_io.list_uris("s3://svd-data/tests/round/") == [
            "s3://svd-data/tests/round/f.txt",
            "s3://svd-data/tests/round/trip.bin",
        ]
        with svd_io.local_copy("s3://svd-data/tests/round/f.txt") as path:
            assert path.read_text() == "file upload"
        svd_io.store_for(uri).delete("s3://svd-data/tests/round/")
        assert svd_io.list_uris("s3://svd-data/tests/round/") == []

    def test_interrupted_upload_leaves_no_partial_object(self) -> None:
        from flows.integrations.s3 import S3Store

        class Exploding(io.RawIOBase):
            """A stream that dies after 6 MB (multipart upload in flight)."""

            def __init__(self) -> None:
                self.sent = 0

            def readable(self) -> bool:
                return True

            def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
                if self.sent > 6 * 1024 * 1024:
                    raise ConnectionResetError("network died mid-upload")
                n = len(buf)
                buf[:n] = b"x" * n
                self.sent += n
                return n

        store = svd_io.store_for("s3://svd-data/")
        assert isinstance(store, S3Store)
        uri = "s3://svd-data/tests/partial/big.bin"
        with pytest.raises((StorageError, ConnectionResetError)):
            store.put_fileobj(Exploding(), uri)
        assert not store.exists(uri)
        assert store.list("s3://svd-data/tests/partial/") == []

    def test_create_is_a_conditional_write(self) -> None:
        """Two writers racing for one key: the first wins, the second gets a clear error (If-None-Match)."""
        from flows.integrations.s3 import S3Store

        store = svd_io.store_for("s3://svd-data/")
        assert isinstance(store, S3Store)
        uri = "s3://svd-data/tests/claims/lock.json"
        store.delete(uri)
        store.create(uri, b"first")
        with pytest.raises(StorageError, match="already exists"):
            store.create(uri, b"second")
        assert store.read_bytes(uri) == b"first"

    def test_large_files_go_up_in_parts(self, tmp_path: Path) -> None:
        """Above the multipart threshold boto3 uploads in parts (one layer, botocore's retries per part)."""
        from flows.integrations import s3

        big = tmp_path / "shard.tar"
        big.write_bytes(b"\0" * (s3.TRANSFER.multipart_threshold + 1024))
        uri = "s3://svd-data/tests/parts/shard.tar"
        store = svd_io.store_for(uri)
        assert isinstance(store, s3.S3Store)
        store.put_file(big, uri)
        bucket, key = s3.split_s3_uri(uri)
        etag = store.client.head_object(Bucket=bucket, Key=key)["ETag"]
        assert etag.strip('"').endswith("-2"), etag  # a multipart ETag names its part count
        assert store.get_file(uri, tmp_path / "back.tar").stat().st_size == big.stat().st_size

    def test_missing_bucket_is_a_clear_error(self) -> None:
        with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
            svd_io.read_bytes("s3://no-such-bucket/key")
        with pytest.raises(StorageError, match="no such object"):
            svd_io.read_bytes("s3://svd-data/missing/key")


@pytest.mark.integration
def test_a_fresh_process_with_only_svd_core_reads_s3(stack) -> None:  # type: ignore[no-untyped-def]
    """DeepSpeed ranks and Dask workers import only svd_core: s3:// comes from the SVD_IO_PLUGINS hook."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    env = {**os.environ, **stack.urls, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    code = (
        "from svd_core import storage; storage.write_bytes('s3://svd-data/tests/plugin.txt', b'via plugin'); "
        "print(storage.read_bytes('s3://svd-data/tests/plugin.txt').decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "via plugin"
    env["SVD_IO_PLUGINS"] = ""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0 and "no storage backend for s3://" in out.stderr
