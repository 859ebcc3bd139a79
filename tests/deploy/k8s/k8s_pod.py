"""Run a rendered Deployment's pod on the Docker engine the way the kubelet would.

The container is created from the manifest alone: image, command (entrypoint) and args, env,
the securityContext's user/group, read-only root filesystem, dropped capabilities and
no-new-privileges, CPU/memory limits as cgroup limits, and only the volumes the manifest declares
(emptyDir -> size-limited tmpfs, configMap -> its data as read-only files, persistentVolumeClaim ->
a read-only bind mount of the directory standing in for the claim). Any other volume type fails
loudly, so a manifest change the harness does not model cannot pass unnoticed.

The one deviation: a pod has its own network namespace, this engine has no bridge network, so the
container shares the host network and ``--host=127.0.0.1`` keeps the server on loopback (the
manifest is rendered with free ports for the same reason).

Probes are executed as the kubelet executes them: a ``grpc`` probe is one
``grpc.health.v1.Health/Check`` call for the probe's ``service`` (default ``""``) to the probe's
port, bounded by ``timeoutSeconds``; success iff the answer is SERVING. Termination is the
kubelet's: run ``preStop`` in the container, then SIGTERM, then SIGKILL when
``terminationGracePeriodSeconds`` (counted from the start of preStop) runs out.
"""

from __future__ import annotations

import calendar
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from tfship.deploy.k8s.resources import cpu_cores, memory_bytes

SERVING = 1
POD_LABEL = "io.tfship.test-pod"


def _health_request(service: str) -> bytes:
    # grpc.health.v1.HealthCheckRequest{string service = 1}
    data = service.encode()
    return b"" if not data else b"\x0a" + bytes([len(data)]) + data


def _health_status(response: bytes) -> int:
    # HealthCheckResponse{ServingStatus status = 1}: absent field = UNKNOWN (0)
    return response[1] if len(response) >= 2 and response[0] == 0x08 else 0


def grpc_probe(probe: dict[str, Any], host: str = "127.0.0.1") -> bool:
    """One execution of a ``grpc`` probe action, as the kubelet does it."""
    action = probe["grpc"]
    timeout = probe.get("timeoutSeconds", 1)
    with grpc.insecure_channel(f"{host}:{action['port']}") as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            return _health_status(check(_health_request(action.get("service", "")), timeout=timeout)) == SERVING
        except grpc.RpcError:
            return False


@dataclass
class Pod:
    """One pod of a rendered Deployment, running as a Docker container."""

    engine: Any
    deployment: dict[str, Any]
    config_maps: dict[str, dict[str, str]]           # ConfigMap name -> data
    claims: dict[str, Path] = field(default_factory=dict)  # claimName -> host directory
    container: Any = None
    _config_dirs: list[tempfile.TemporaryDirectory[str]] = field(default_factory=list)

    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def spec(self) -> dict[str, Any]:
        [container] = self.pod_spec["containers"]
        return container

    def _mounts(self) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        volumes = {v["name"]: v for v in self.pod_spec.get("volumes", [])}
        binds: dict[str, dict[str, str]] = {}
        tmpfs: dict[str, str] = {}
        for mount in self.spec.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            path, read_only = mount["mountPath"], bool(mount.get("readOnly"))
            if "emptyDir" in volume:
                size = memory_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
                tmpfs[path] = f"rw,size={size},mode=1777"
            elif "configMap" in volume:
                holder = tempfile.TemporaryDirectory(prefix="tfship-configmap-")
                self._config_dirs.append(holder)
                os.chmod(holder.name, 0o755)
                for key, text in self.config_maps[volume["configMap"]["name"]].items():
                    (Path(holder.name) / key).write_text(text)
                    os.chmod(Path(holder.name) / key, 0o644)
                binds[holder.name] = {"bind": path, "mode": "ro" if read_only else "rw"}
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                read_only = read_only or bool(claim.get("readOnly"))
                binds[str(self.claims[claim["claimName"]])] = {"bind": path, "mode": "ro" if read_only else "rw"}
            else:
                raise NotImplementedError(f"volume type of {volume} is not emulated")
        return binds, tmpfs

    def start(self) -> None:
        spec = self.spec
        security = {**self.pod_spec.get("securityContext", {}), **spec.get("securityContext", {})}
        assert security.get("runAsNonRoot") and security.get("runAsUser", 0) > 0
        binds, tmpfs = self._mounts()
        limits = spec.get("resources", {}).get("limits", {})
        self.container = self.engine.containers.run(
            spec["image"],
            entrypoint=spec.get("command"),
            command=[*spec.get("args", []), "--host=127.0.0.1"],
            environment={e["name"]: e["value"] for e in spec.get("env", [])},
            user=f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}",
            read_only=bool(security.get("readOnlyRootFilesystem")),
            cap_drop=security.get("capabilities", {}).get("drop", []),
            cap_add=security.get("capabilities", {}).get("add", []),
            security_opt=[] if security.get("allowPrivilegeEscalation", True) else ["no-new-privileges"],
            privileged=bool(security.get("privileged")),
            volumes=binds,
            tmpfs=tmpfs,
            nano_cpus=int(cpu_cores(limits["cpu"]) * 1e9) if "cpu" in limits else 0,
            mem_limit=memory_bytes(limits["memory"]) if "memory" in limits else None,
            network_mode="host",
            labels={POD_LABEL: "1"},
            detach=True,
        )

    def probe(self, kind: str) -> bool:
        """Execute the manifest's ``startupProbe`` / ``readinessProbe`` / ``livenessProbe`` once."""
        return grpc_probe(self.spec[kind])

    def pre_stop(self) -> None:
        """The container's preStop hook, run inside it like the kubelet does (blocking)."""
        command = self.spec["lifecycle"]["preStop"]["exec"]["command"]
        result = self.container.exec_run(command, user=self.container.attrs["Config"]["User"])
        assert result.exit_code == 0, result.output

    def signal_term(self) -> None:
        self.container.kill(signal="SIGTERM")

    def wait_exit(self, timeout: float) -> int | None:
        """Exit code, or None when still running after ``timeout`` seconds."""
        try:
            return int(self.container.wait(timeout=timeout)["StatusCode"])
        except Exception:  # requests' ReadTimeout through the docker SDK
            return None

    def logs(self) -> list[tuple[float, str]]:
        """(unix time, line) for every log line, from the engine's own timestamps."""
        raw = self.container.logs(timestamps=True).decode(errors="replace")
        lines = []
        for line in raw.splitlines():
            stamp, _, text = line.partition(" ")
            match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", stamp)
            if match:
                seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
                lines.append((seconds + float(match.group(2) or 0), text))
        return lines

    def remove(self) -> None:
        if self.container is not None:
            self.container.remove(force=True)
        for holder in self._config_dirs:
            holder.cleanup()
