"""A real S3 endpoint over HTTP (or HTTPS) on loopback (moto's server) for the tests that need an object store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway key and certificate for `host` (IP SAN), made with `cryptography`; (cert, key)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "s3-cert.pem", directory / "s3-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@contextmanager
def s3_tls_server(bucket: str, cert_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """moto's S3 server over HTTPS (a self-signed certificate): for clients that speak TLS only.

    Why: pgBackRest's S3 driver has no plain-HTTP mode. moto's ThreadedMotoServer cannot take an SSL
    context, so this runs the same WSGI application in werkzeug's threaded server with one. The
    Airflow connection carries `verify: false` (botocore's option), which pgBackRest's hook turns into
    `repo1-storage-verify-tls=n`.
    """
    import threading

    import boto3
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    cert, key = self_signed_certificate(cert_dir)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", free_port(), app, threaded=True, ssl_context=(str(cert), str(key)),
                         request_handler=MotoRequestHandler)
    plain_shutdown = server.shutdown_request

    def shutdown_request(request: Any) -> None:
        # werkzeug closes every connection after its response ("Connection: close") but drops the TLS
        # layer without a close_notify; OpenSSL 3 clients (pgBackRest) then fail with "unexpected eof
        # while reading". Say goodbye properly first.
        with contextlib.suppress(OSError, ValueError):
            request.settimeout(2)
            request.unwrap()
        plain_shutdown(request)

    server.shutdown_request = shutdown_request  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"https://127.0.0.1:{server.port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", verify=False,
                     **CREDENTIALS).create_bucket(Bucket=bucket)
        yield endpoint, {
            "conn_type": "aws", "login": CREDENTIALS["aws_access_key_id"],
            "password": CREDENTIALS["aws_secret_access_key"],
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1", "verify": False},
        }
    finally:
        server.shutdown()
        thread.join(timeout=10)
