"""A real DNS server for tests: dnsmasq (Debian's dnsmasq-base) on a loopback port, answering names
from a hosts file only, TTL 1 s. ``add(name, address)`` appends a record and SIGHUPs dnsmasq, which
re-reads its hosts files, as a headless Service gains a ready pod."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from needs import need_command
from tfship.deploy.launch import free_port, stop_process


@dataclass
class DnsServer:
    process: subprocess.Popen[bytes]
    port: int
    hosts: Path

    @property
    def address(self) -> str:
        """``HOST:PORT`` as a ``dns://HOST:PORT/NAME`` authority."""
        return f"127.0.0.1:{self.port}"

    def lookup(self, name: str) -> list[str]:
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], self.port, 2.0
        try:
            return sorted(r.address for r in resolver.resolve(name, "A", search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.exception.Timeout):
            return []

    def add(self, name: str, address: str, timeout: float = 10.0) -> None:
        """Add an A record and wait (bounded) until the server answers with it."""
        with self.hosts.open("a") as f:
            f.write(f"{address} {name}\n")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while address not in self.lookup(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"dnsmasq did not answer {address} for {name} within {timeout} s")
            time.sleep(0.05)


@contextmanager
def dns_server(records: dict[str, list[str]], workdir: Path) -> Iterator[DnsServer]:
    """dnsmasq answering ``records`` (name -> A addresses) on a free 127.0.0.1 port."""
    binary = need_command("dnsmasq", "dnsmasq-base")
    hosts = workdir / "hosts"
    hosts.write_text("".join(f"{a} {name}\n" for name, addresses in records.items() for a in addresses))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--local-ttl=1",
         "--pid-file=", "--user=root", "--log-facility=-"],
        stdout=subprocess.DEVNULL, stderr=(workdir / "dnsmasq.log").open("wb"))
    server = DnsServer(process, port, hosts)
    try:
        deadline = time.monotonic() + 20
        first, addresses = next(iter(records.items()))
        while server.lookup(first) != sorted(addresses):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq did not serve {first}: {(workdir / 'dnsmasq.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield server
    finally:
        stop_process(process, 5)
