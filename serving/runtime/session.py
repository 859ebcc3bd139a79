"""A SavedModel MetaGraph loaded into a TF1 Session and run by tensor name, as TF Serving does.

TF Serving feeds signature inputs straight into the graph by tensor name and never checks fed
shapes against the placeholders' static shapes (TF Serving compat spec §3.3). Python's ``Session.run`` and
``make_callable`` do check, and ``tf.saved_model.load`` refuses some valid TF1 exports, so this
module loads with the TF1 loader and runs through the C-level session API
(``TF_SessionRunCallable`` with cached callables, ``TF_SessionRun_wrapper`` when a per-call
timeout needs its own ``RunOptions``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfship.errors import (
    DeadlineExceededError,
    NotFoundError,
    ServingError,
    UnimplementedError,
    error_for_code,
)

__all__ = ["SessionBundle", "check_saved_model_dir"]

_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def check_saved_model_dir(path: Path) -> None:
    """Raise TF Serving's error when ``path`` holds no loadable SavedModel.

    A legacy SessionBundle (``export.meta``) is UNIMPLEMENTED, anything else without
    ``saved_model.pb(txt)`` is NOT_FOUND.
    """
    if any((path / name).is_file() for name in _SAVED_MODEL_FILES):
        return
    if (path / "export.meta").exists():
        raise UnimplementedError(
            "Session Bundle is deprecated and removed. "
            f"Re-export {path} as a SavedModel (tf.saved_model.save or keras model.export)."
        )
    raise NotFoundError(
        "Specified file path does not appear to contain a SavedModel bundle (should have a file "
        f"called `saved_model.pb`)\nSpecified file path: {path}"
    )


def op_error(exc: Any) -> ServingError:
    """Map a ``tf.errors.OpError`` to the ServingError of the same canonical code."""
    message = getattr(exc, "message", None) or str(exc)
    return error_for_code(int(getattr(exc, "error_code", 2)), message)


class SessionBundle:
    """A loaded MetaGraph: ``signature_defs`` plus :meth:`run` by tensor name. Thread-safe."""

    def __init__(self, session: Any, graph: Any, meta_graph: Any) -> None:
        self._session = session
        self._graph = graph
        self.meta_graph = meta_graph
        self.signature_defs = dict(meta_graph.signature_def)
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        self._outputs: dict[str, Any] = {}
        self._feed_dtypes: dict[str, np.dtype | None] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def load(
        cls,
        path: Path,
        tags: Sequence[str] = ("serve",),
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> SessionBundle:
        """Load the MetaGraph tagged ``tags`` and run its restore and init ops."""
        if isinstance(tags, str):  # the --saved_model_tags flag form: "serve,gpu"
            tags = tuple(tag for tag in tags.split(",") if tag)
        check_saved_model_dir(path)
        import tensorflow as tf

        from .custom_ops import missing_op_hint, register_custom_ops

        register_custom_ops()  # TF Text's ops, as upstream's binary links them
        from tensorflow.python.client import pywrap_tf_session as tf_session

        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=intra_op_threads,
            inter_op_parallelism_threads=inter_op_threads,
            allow_soft_placement=True,
        )
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=config)
        try:
            with graph.as_default():
                # SavedModelLoader is what tf.compat.v1.saved_model.load wraps, minus its
                # deprecation warning on every load.
                from tensorflow.python.saved_model.loader_impl import SavedModelLoader

                meta_graph = SavedModelLoader(os.fspath(path)).load(session, list(tags))
            graph.finalize()
            # Later runs bypass Session.run, which is what normally pushes the graph to the runtime.
            tf_session.ExtendSession(session._session)
        except tf.errors.OpError as exc:
            session.close()
            error = op_error(exc)
            hint = missing_op_hint(error.message)
            if hint:
                raise error_for_code(error.code, f"{error.message}\n{hint}") from exc
            raise error from exc
        except (RuntimeError, ValueError, OSError) as exc:
            session.close()
            text = str(exc)
            hint = missing_op_hint(text)
            if hint:
                raise error_for_code(5, f"Failed to load SavedModel at {path}: {text}\n{hint}") from exc
            if "MetaGraphDef associated with tags" in text or "could not be found in SavedModel" in text:
                raise NotFoundError(
                    f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}. "
                    f"To inspect available tag-sets in the SavedModel, please use the SavedModel "
                    f"CLI: `saved_model_cli` ({path})"
                ) from exc
            raise error_for_code(3, f"Failed to load SavedModel at {path}: {text}") from exc
        except Exception as exc:  # e.g. a corrupt saved_model.pb (protobuf DecodeError)
            session.close()
            raise error_for_code(
                15, f"Failed to load SavedModel at {path}: {type(exc).__name__}: {exc}. "
                "Re-export the model; the SavedModel files are unreadable."
            ) from exc
        return cls(session, graph, meta_graph)

    def _output(self, name: str) -> Any:
        out = self._outputs.get(name)
        if out is None:
            out = self._graph.get_tensor_by_name(name)._as_tf_output()
            self._outputs[name] = out
        return out

    def feed_dtype(self, name: str) -> np.dtype | None:
        """The numpy dtype the graph tensor ``name`` takes (REF types as their base), if known."""
        dtype = self._feed_dtypes.get(name)
        if dtype is None and name not in self._feed_dtypes:
            try:
                tf_dtype = self._graph.get_tensor_by_name(name).dtype.base_dtype
                dtype = np.dtype(object) if tf_dtype.name == "string" else tf_dtype.as_numpy_dtype
                dtype = np.dtype(dtype)
            except (KeyError, ValueError, TypeError):
                dtype = None
            self._feed_dtypes[name] = dtype
        return dtype

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]) -> int:
        key = (feeds, fetches)
        handle = self._callables.get(key)
        if handle is not None:
            return handle
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.client import pywrap_tf_session as tf_session

        with self._lock:
            handle = self._callables.get(key)
            if handle is None:
                options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
                buffer = tf_session.TF_NewBufferFromString(options.SerializeToString())
                try:
                    handle = tf_session.TF_SessionMakeCallable(self._session._session, buffer)
                finally:
                    tf_session.TF_DeleteBuffer(buffer)
                self._callables[key] = handle
        return handle

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        timeout: float | None = None,
    ) -> list[np.ndarray]:
        """Run the graph: ``feeds`` by tensor name, return ``fetches`` in order.

        No shape checks beyond the kernels' own; a runtime op error becomes the ServingError of
        its canonical code; ``timeout`` (seconds) becomes RunOptions.timeout_in_ms.
        """
        import tensorflow as tf
        from tensorflow.python.client import pywrap_tf_session as tf_session

        if self._closed:
            raise error_for_code(14, "Servable is unloaded; retry the request.")
        try:
            if timeout is None:
                names = tuple(feeds)
                handle = self._callable(names, tuple(fetches))
                values = tf_session.TF_SessionRunCallable(
                    self._session._session, handle, [feeds[n] for n in names], None
                )
                return [v if type(v) is np.ndarray else np.asarray(v) for v in values]
            millis = int(timeout * 1000)
            if millis <= 0:
                raise DeadlineExceededError("Deadline Exceeded")
            from tensorflow.core.protobuf import config_pb2

            options = config_pb2.RunOptions(timeout_in_ms=millis).SerializeToString()
            buffer = tf_session.TF_NewBufferFromString(options)
            try:
                values = tf_session.TF_SessionRun_wrapper(
                    self._session._session,
                    buffer,
                    {self._output(name): value for name, value in feeds.items()},
                    [self._output(name) for name in fetches],
                    [],
                    None,
                )
            finally:
                tf_session.TF_DeleteBuffer(buffer)
            return [v if type(v) is np.ndarray else np.asarray(v) for v in values]
        except tf.errors.OpError as exc:
            raise op_error(exc) from exc
        except KeyError as exc:
            raise error_for_code(3, f"Tensor not found in graph: {exc}") from exc

    def close(self) -> None:
        """Release callables and close the session (after in-flight runs finished)."""
        from tensorflow.python.client import pywrap_tf_session as tf_session

        with self._lock:
            if self._closed:
                return
            self._closed = True
            for handle in self._callables.values():
                tf_session.TF_SessionReleaseCallable(self._session._session, handle)
            self._callables.clear()
        self._session.close()
