"""ServerCore: the manager plus config application, reloads and the file-system/config pollers.

The data plane (``serving.data_plane``) holds one :class:`ServerCore` and acquires versions from
its manager per request; ``main`` builds it from the flags.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfship.errors import NotFoundError, ServingError

from ..capture import ServerCapture, capture_configs
from .flags import ServerFlags
from .manager import Handle, ModelEntry, ModelManager, State
from .memory import release_unloaded_memory
from .server_config import entries_from_config

__all__ = ["CoreOptions", "ServerCore"]

log = logging.getLogger("tfship.serving")


@dataclass(frozen=True)
class CoreOptions:
    """The flags that shape model loading and lifecycle (names as the server flags)."""

    file_system_poll_wait_seconds: int = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    saved_model_tags: tuple[str, ...] = ("serve",)
    batching: Any = None  # serving.config.batching.BatchingParameters | None
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    enable_signature_method_name_check: bool = False  # read by the frontends
    serving_loop: Any = None  # serving.event_loop.ServingLoop: the batchers schedule on it

    @classmethod
    def from_flags(cls, flags: ServerFlags, *, batching: Any = None, serving_loop: Any = None) -> CoreOptions:
        """The loading and lifecycle options the server's flags ask for (``batching``: the parsed
        --batching_parameters_file when --enable_batching is set)."""
        parallel = flags.tensorflow_session_parallelism
        return cls(
            file_system_poll_wait_seconds=flags.file_system_poll_wait_seconds,
            max_num_load_retries=flags.max_num_load_retries,
            load_retry_interval_micros=flags.load_retry_interval_micros,
            allow_version_labels_for_unavailable_models=flags.allow_version_labels_for_unavailable_models,
            enable_model_warmup=flags.enable_model_warmup,
            num_request_iterations_for_warmup=flags.num_request_iterations_for_warmup,
            saved_model_tags=tuple(t for t in flags.saved_model_tags.split(",") if t),
            batching=batching,
            intra_op_threads=int(flags.tensorflow_intra_op_parallelism or parallel),
            inter_op_threads=int(flags.tensorflow_inter_op_parallelism or parallel),
            enable_signature_method_name_check=flags.enable_signature_method_name_check,
            serving_loop=serving_loop,
        )


class ServerCore:
    """Owns the :class:`ModelManager`, applies configs, runs the pollers."""

    def __init__(
        self,
        options: CoreOptions = CoreOptions(),
        *,
        loader: Callable[[str, int, Path], Any] | None = None,
        metrics: Any = None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.manager = ModelManager(
            loader or self._load_servable,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval=options.load_retry_interval_micros / 1e6,
            allow_version_labels_for_unavailable_models=(
                options.allow_version_labels_for_unavailable_models
            ),
            on_state=self._on_state,
            on_unloaded=self._on_unloaded,
        )
        from ..rollout import RolloutController

        #: canary routing and shadow comparison of models under rollout (tfship only, issue 21); the
        #: data plane takes its hooks from here (RolloutController.attach)
        self.rollout = RolloutController(
            self.manager.current_labels, self._acquire_version, self._loaded, busy=self._saturated,
            metrics=metrics)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reload_lock = threading.Lock()
        self._has_config = False
        #: traffic capture per model (logging_config); the data plane's observer is capture.observe
        self.capture = ServerCapture(metrics)

    # ------------------------------------------------------------------ loading

    def _load_servable(self, name: str, version: int, path: Path) -> Any:
        from tfship.serving.runtime.servable import LoadOptions, Servable

        o = self.options
        options = LoadOptions(
            tags=o.saved_model_tags,
            enable_warmup=o.enable_model_warmup,
            warmup_iterations=o.num_request_iterations_for_warmup,
            batching=o.batching,
            on_batch=self.metrics.batch_hook(name) if self.metrics is not None else None,
            on_run=self.metrics.runtime_hook(name) if self.metrics is not None else None,
            on_examples=self.metrics.examples_hook(name) if self.metrics is not None else None,
            on_warmup=(functools.partial(self.metrics.observe_warmup, str(path))
                       if self.metrics is not None else None),
            intra_op_threads=o.intra_op_threads,
            inter_op_threads=o.inter_op_threads,
            serving_loop=o.serving_loop,
        )
        return Servable.load(name, version, path, options)

    def _on_state(self, name: str, version: int, state: State) -> None:
        if self.metrics is not None:
            self.metrics.set_state(name, version, state)

    def _on_unloaded(self, name: str, version: int, path: Path) -> None:
        """After a version unloaded: drop its metric series, give its memory back (a server
        that swaps every hour for months must not keep anything per version)."""
        if self.metrics is not None:
            self.metrics.forget_version(name, version, str(path))
        release_unloaded_memory()

    # ------------------------------------------------------------------ config

    def start(self, config: Any) -> None:
        """Install the initial config and block until every model settled (TF Serving compat spec §1.3 step 3).

        Raises the ServingError that makes TF Serving's startup fail.
        """
        entries = entries_from_config(config)
        captures = capture_configs(config)
        # Poll while waiting, like upstream's storage path source: a base path that does not
        # exist yet (or has no version) is re-listed until a version appears and loads.
        self._start_fs_poller()
        self.manager.apply_config(entries)
        self.capture.apply(captures)
        # an empty first config (CONFIG_NOT_SET) allows any later config, like upstream
        self._has_config = config.WhichOneof("config") == "model_config_list"

    def reload_config(self, config: Any) -> None:
        """Apply a new config (ReloadConfig semantics, TF Serving compat spec §2.3-2.5); old one kept on error."""
        with self._reload_lock:
            entries = entries_from_config(config, self.manager.entries(), reload=self._has_config)
            if config.WhichOneof("config") is None:
                log.info("Taking no action for empty config.")
                return
            captures = capture_configs(config)  # a bad logging_config rejects the whole reload
            self.manager.apply_config(entries, initial=False)
            self.capture.apply(captures)
            self._has_config = True

    def entries(self) -> dict[str, ModelEntry]:
        return self.manager.entries()

    # ------------------------------------------------------------------ pollers

    def start_pollers(
        self, config_file: str | None = None, config_poll_seconds: int = 0
    ) -> None:
        """File-system version polling and, with a config file and N > 0, config re-reading."""
        self._start_fs_poller()
        if config_file and config_poll_seconds > 0:
            self._spawn("config-poller", self._poll_config, config_file, float(config_poll_seconds))

    def _start_fs_poller(self) -> None:
        fs = self.options.file_system_poll_wait_seconds
        if fs > 0 and not any(t.name == "fs-poller" for t in self._threads):
            self._spawn("fs-poller", self._poll_fs, float(fs))

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _poll_fs(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.manager.poll_all()
            except Exception:  # noqa: BLE001 - a poll error must not kill the poller
                log.exception("file system poll failed")

    def _poll_config(self, path: str, interval: float) -> None:
        from tfship.serving.config.model_config import read_model_config_file

        while not self._stop.wait(interval):
            try:
                config = read_model_config_file(path)
                self.reload_config(config)
            except ServingError as exc:
                log.error("Failed to reload model config %s: %s: %s", path, exc.code.name,
                          exc.message)
            except Exception:  # noqa: BLE001
                log.exception("Failed to reload model config %s", path)

    # ------------------------------------------------------------------ rollout

    def _acquire_version(self, name: str, version: int) -> Handle:
        return self.manager.acquire(name, version)

    def _loaded(self, name: str) -> set[int] | None:
        """AVAILABLE versions of ``name``; ``None`` when the model is not served."""
        if name not in self.manager.model_names():
            return None
        try:
            return {s.version for s in self.manager.status(name) if s.state == State.AVAILABLE}
        except NotFoundError:
            return set()

    def _saturated(self) -> bool:
        """Every model thread is taken by a real request: shadow runs are dropped, never queued."""
        if self.metrics is None:
            return False
        loop = self.options.serving_loop
        threads = loop.executor._max_workers if loop is not None else 4  # noqa: SLF001
        return bool(self.metrics.requests_in_flight() > threads)

    # ------------------------------------------------------------------ shutdown

    def stop(self, drain_timeout: float = 30.0) -> None:
        self._stop.set()
        self.rollout.close()
        self.manager.shutdown(drain_timeout=drain_timeout)
        self.capture.close()
