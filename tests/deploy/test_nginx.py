"""The generated nginx config: what it balances, and that nginx itself accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tfship.deploy.nginx import LoadBalancerConfig, nginx_binary, render_nginx_config, start_nginx

from tfship.errors import ConfigError

CONFIG = LoadBalancerConfig(["127.0.0.1:9001", "127.0.0.1:9003"], ["127.0.0.1:9002", "127.0.0.1:9004"], 9100, 9101)


def test_grpc_goes_through_grpc_pass_and_rest_through_proxy_pass(tmp_path: Path) -> None:
    text = render_nginx_config(CONFIG, tmp_path)
    assert "listen 127.0.0.1:9100 http2;" in text and "grpc_pass grpc://tfship_grpc;" in text
    assert "listen 127.0.0.1:9101;" in text and "proxy_pass http://tfship_rest;" in text
    assert text.count("server 127.0.0.1:900") == 4
    # A replica that drops the connection: the call goes to the next one (Predict is safe to resend).
    assert "grpc_next_upstream error timeout http_502 http_503 http_504 non_idempotent;" in text
    assert "client_max_body_size 512m;" in text  # bounded like the replicas' REST limit
    assert str(tmp_path.resolve()) in text and "/var/log" not in text


def test_nginx_accepts_the_generated_config(tmp_path: Path) -> None:
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / kind).mkdir(parents=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_config(CONFIG, tmp_path))
    check = subprocess.run([nginx_binary(), "-p", str(tmp_path), "-e", str(tmp_path / "e.log"), "-c", str(conf),
                            "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_missing_replicas_or_ports_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No replicas for the tfship_grpc upstream"):
        render_nginx_config(LoadBalancerConfig([], ["a:1"], 1, 2), tmp_path)
    with pytest.raises(ConfigError, match="gRPC or a REST port"):
        render_nginx_config(LoadBalancerConfig(["a:1"], ["a:2"], 0, 0), tmp_path)


def test_a_rejected_config_names_the_problem(tmp_path: Path) -> None:
    bad = LoadBalancerConfig(["127.0.0.1:1"], ["127.0.0.1:2"], 9100, 9101, max_rest_body="lots")
    with pytest.raises(ConfigError, match="nginx rejected the generated config"):
        start_nginx(bad, tmp_path)
