"""TLS options: grpcs:// (server-auth and mutual TLS) and https:// (verify / client cert).

tfship-model-server has no TLS (like most TF Serving deployments, which terminate TLS in front),
so these tests stand up minimal TLS endpoints in-process: a real gRPC server answering
ModelService/GetModelStatus and a real HTTPS server answering the REST status route, both with
certificates made by the openssl CLI for 127.0.0.1.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from needs import need_command
from tfship.client import ClientConfig, RetryPolicy, TlsConfig, connect
from tfship.deploy.launch import free_port

from tfship.errors import UnavailableError
from tfship.wire.protos import serving_wire_pb2 as pb


@pytest.fixture(scope="module", autouse=True)
def _openssl_cli() -> None:
    need_command("openssl", "openssl")


NO_RETRY = RetryPolicy(max_attempts=1)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", f"{name}.pem", cwd=d)
    return d


def _status_bytes() -> bytes:
    response = pb.GetModelStatusResponse()
    response.model_version_status.add(version=3, state=pb.ModelVersionStatus.AVAILABLE)
    return response.SerializeToString()


def _grpc_server(certs: Path, mutual: bool) -> tuple[Any, int]:
    import grpc

    handler = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "GetModelStatus": grpc.unary_unary_rpc_method_handler(lambda request, context: _status_bytes())})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=(certs / "ca.pem").read_bytes() if mutual else None,
        require_client_auth=mutual)
    port = free_port()
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    return server, port


@pytest.mark.parametrize("mutual", [False, True])
def test_grpcs_with_root_certificates_and_client_cert(certs: Path, mutual: bool) -> None:
    server, port = _grpc_server(certs, mutual)
    try:
        tls = TlsConfig(root_certificates=str(certs / "ca.pem"),
                        client_cert=str(certs / "client.pem") if mutual else None,
                        client_key=str(certs / "client.key") if mutual else None)
        with connect(f"grpcs://127.0.0.1:{port}", ClientConfig(tls=tls, timeout=10)) as client:
            assert [v.version for v in client.status("m")] == [3]
        # Without the CA (system roots only) the handshake fails: UNAVAILABLE, bounded.
        with connect(f"grpcs://127.0.0.1:{port}", ClientConfig(timeout=5, retry=NO_RETRY)) as client, \
                pytest.raises(UnavailableError):
            client.status("m")
    finally:
        server.stop(None)


class _StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        body = json.dumps({"model_version_status": [
            {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https_port(certs: Path) -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _StatusHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
    ctx.load_verify_locations(certs / "ca.pem")
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client cert is checked when sent
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_verify_options(certs: Path, https_port: int) -> None:
    url = f"https://127.0.0.1:{https_port}"
    tls = TlsConfig(root_certificates=str(certs / "ca.pem"), client_cert=str(certs / "client.pem"),
                    client_key=str(certs / "client.key"))
    with connect(url, ClientConfig(tls=tls)) as client:
        assert client.status("m")[0].version == 3
    with connect(url, ClientConfig(tls=TlsConfig(verify=False))) as client:
        assert client.status("m")[0].state == "AVAILABLE"
    with connect(url, ClientConfig(retry=NO_RETRY)) as client, pytest.raises(UnavailableError, match="CERTIFICATE"):
        client.status("m")
