"""nginx from the distribution as the fleet's L7 load balancer: a generated config, started and stopped.

gRPC goes through ``grpc_pass`` (HTTP/2 from the client, HTTP/2 to every replica, one stream per
call, so calls spread over replicas per call and not per connection); REST through ``proxy_pass``
with HTTP/1.1 keep-alive to the replicas (nginx's proxy module speaks no HTTP/2 upstream). A call
that cannot reach a replica (refused, reset, 502/503/504) is passed to the next one: a Predict is
safe to send twice, so ``non_idempotent`` is allowed. A replica that hangs (its process frozen,
its sockets open) is given up after ``read_timeout`` and left out for ``fail_timeout``; the call
goes to the next replica.

nginx runs with ``master_process off`` as the calling user: no privilege drop, so its temp dirs
can live in a private work dir; one process is plenty for a loopback test balancer.

>>> lb = start_nginx(LoadBalancerConfig(["127.0.0.1:8500"], ["127.0.0.1:8501"], 9500, 9501), work)  # doctest: +SKIP
>>> lb.grpc_url, lb.rest_url  # doctest: +SKIP
('grpc://127.0.0.1:9500', 'http://127.0.0.1:9501')
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tfship.errors import ConfigError, UnavailableError

__all__ = ["LoadBalancerConfig", "LoadBalancer", "render_nginx_config", "start_nginx", "nginx_binary"]


@dataclass(frozen=True)
class LoadBalancerConfig:
    """Replica addresses (``host:port``) behind the balancer, and where the balancer listens.

    ``grpc_port``/``rest_port`` 0 leave that side out. ``max_grpc_body``/``max_rest_body`` bound
    request sizes the way the replicas do (2 GiB gRPC messages; ``--rest_api_max_request_bytes``).
    """

    grpc_upstreams: Sequence[str]
    rest_upstreams: Sequence[str]
    grpc_port: int
    rest_port: int
    host: str = "127.0.0.1"
    max_grpc_body: str = "2047m"
    max_rest_body: str = "512m"
    #: seconds a replica that failed (or timed out) is left out before nginx tries it again
    fail_timeout: int = 2
    #: Seconds nginx waits for a replica's answer (between two reads) before it gives up on it,
    #: marks it failed for ``fail_timeout`` and passes the call to the next replica: the bound on
    #: what a replica that hangs (a frozen process keeps its sockets open) costs a call. Keep it
    #: above the slowest legitimate model run and below the clients' deadline (see README).
    read_timeout: float = 10.0
    #: Seconds one call may spend across all its tries (0: no limit besides the tries).
    next_upstream_timeout: float = 0.0


def _ms(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


def render_nginx_config(config: LoadBalancerConfig, workdir: str | os.PathLike[str]) -> str:
    """The nginx.conf text for ``config``; pid, logs and temp files under ``workdir``."""
    work = Path(workdir).resolve()
    if not config.grpc_port and not config.rest_port:
        raise ConfigError("The load balancer needs a gRPC or a REST port (both are 0).")
    temp = "\n".join(f"    {kind}_temp_path {work / 'tmp' / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))

    def upstream(name: str, servers: Sequence[str]) -> str:
        if not servers:
            raise ConfigError(f"No replicas for the {name} upstream.")
        lines = "\n".join(f"        server {s} max_fails=1 fail_timeout={config.fail_timeout}s;" for s in servers)
        return f"    upstream {name} {{\n{lines}\n        keepalive 32;\n    }}\n"

    blocks = []
    if config.grpc_port:
        blocks.append(upstream("tfship_grpc", config.grpc_upstreams) + f"""
    server {{
        listen {config.host}:{config.grpc_port} http2;
        client_max_body_size {config.max_grpc_body};
        keepalive_requests 1000000;
        location / {{
            grpc_pass grpc://tfship_grpc;
            grpc_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            grpc_next_upstream_tries 3;
            grpc_next_upstream_timeout {_ms(config.next_upstream_timeout)};
            grpc_read_timeout {_ms(config.read_timeout)};
            grpc_send_timeout {_ms(config.read_timeout)};
        }}
    }}
""")
    if config.rest_port:
        blocks.append(upstream("tfship_rest", config.rest_upstreams) + f"""
    server {{
        listen {config.host}:{config.rest_port};
        client_max_body_size {config.max_rest_body};
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://tfship_rest;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout {_ms(config.next_upstream_timeout)};
            proxy_read_timeout {_ms(config.read_timeout)};
            proxy_send_timeout {_ms(config.read_timeout)};
        }}
    }}
""")
    body = "\n".join(blocks)
    return f"""# generated by tfship.deploy.nginx
daemon off;
master_process off;
pid {work / 'nginx.pid'};
error_log {work / 'error.log'} warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
{temp}
{body}}}
"""


def nginx_binary() -> str:
    """Path of nginx (Debian: /usr/sbin/nginx, not always on a user's PATH)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    if found is None:
        raise ConfigError("nginx is not installed: `apt-get install nginx` (Debian/Ubuntu) puts it in /usr/sbin.")
    return found


@dataclass
class LoadBalancer:
    """A running nginx; ``stop()`` (or leaving the ``with`` block) ends it."""

    process: subprocess.Popen[bytes]
    config: LoadBalancerConfig
    workdir: Path

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.config.host}:{self.config.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.config.rest_port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / "error.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGQUIT (nginx's graceful stop: in-flight requests finish), then SIGKILL after ``timeout`` s."""
        from tfship.deploy.launch import stop_process

        return stop_process(self.process, timeout, sig=signal.SIGQUIT)

    def __enter__(self) -> LoadBalancer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_nginx(config: LoadBalancerConfig, workdir: str | os.PathLike[str], *, timeout: float = 30.0) -> LoadBalancer:
    """Write the config, check it with ``nginx -t``, start nginx and wait until it listens.

    The balancer itself has no model state; callers check readiness through it with GetModelStatus.
    """
    work = Path(workdir).resolve()
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(render_nginx_config(config, work))
    binary = nginx_binary()
    # -e: the compiled-in error log (/var/log/nginx) may not be writable before the config is read.
    base = [binary, "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)]
    check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise ConfigError(f"nginx rejected the generated config {conf}:\n{check.stderr.strip()}")
    log = open(work / "nginx.out", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(base, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    balancer = LoadBalancer(process, config, work)
    deadline = time.monotonic() + timeout
    ports = [p for p in (config.grpc_port, config.rest_port) if p]
    while not all(_listening(config.host, p) for p in ports):
        if process.poll() is not None or time.monotonic() > deadline:
            balancer.stop()
            raise UnavailableError(f"nginx did not start listening on {config.host}:{ports} within {timeout:g} s:\n"
                                   f"{balancer.log_tail()}")
        time.sleep(0.05)  # waiting for the listening sockets; bounded by the deadline above
    return balancer


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0
