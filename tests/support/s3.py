"""A real S3 endpoint over HTTP on loopback (moto's server) for the tests that need an object store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.postgres import free_port

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextmanager
def s3_server(bucket: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Start the server with `bucket` created; yield its URL and an Airflow `aws` connection to it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS).create_bucket(Bucket=bucket)
        yield endpoint, {
            "conn_type": "aws", "login": CREDENTIALS["aws_access_key_id"],
            "password": CREDENTIALS["aws_secret_access_key"],
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    finally:
        server.stop()
