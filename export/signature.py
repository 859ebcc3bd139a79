"""Build the ``serving_default`` signature of a model and write it as a SavedModel.

Inputs are named after the Keras inputs (the ``keras.Input`` / InputLayer names), outputs after the
model's outputs (Functional ``output_names``, a Sequential's last layer, the keys of a dict output;
``output_0``.. for a subclassed model returning tensors). The batch dimension is always dynamic and
dtypes are kept (string inputs stay ``DT_STRING``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tfship.export.sources import LoadedSource

from tfship.errors import SignatureError
from tfship.manifest import Signature

__all__ = ["ServingModel", "prepare_serving_model", "write_saved_model", "sanitize_name"]

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def sanitize_name(name: str) -> str:
    """A name TF accepts as a signature key and placeholder name."""
    name = _BAD_CHARS.sub("_", name) or "tensor"
    return name if re.match(r"[A-Za-z0-9.]", name[0]) else f"t{name}"


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        name = sanitize_name(name)
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


@dataclass
class ServingModel:
    """A model ready to export: ordered named input specs and a call returning named outputs.

    ``call`` takes ``{input name: tensor}`` and returns ``{output name: tensor}``; it runs eagerly
    for the reference outputs and is traced for the SavedModel.
    """

    input_specs: list[Any]  # tf.TensorSpec, named
    call: Callable[[Mapping[str, Any]], dict[str, Any]]
    source: LoadedSource
    vocabulary: list[str] = field(default_factory=list)
    phrases: bool = False  # string inputs are free text (TextVectorization), not single tokens
    built: bool = True  # False: call() once eagerly (on samples) before tracing

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.input_specs]

    def reference_outputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the in-memory model on ``inputs``; numpy outputs by output name."""
        import tensorflow as tf

        tensors = {s.name: tf.constant(inputs[s.name], dtype=s.dtype) for s in self.input_specs}
        outputs = self.call(tensors)
        self.built = True
        return {k: _to_numpy(v) for k, v in outputs.items()}


def _to_numpy(value: Any) -> np.ndarray:
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return np.asarray(array)


def _tf_spec(shape: Sequence[int | None] | None, dtype: Any, name: str) -> Any:
    import tensorflow as tf

    shape = None if shape is None else [None, *list(shape)[1:]] if len(shape) else []
    return tf.TensorSpec(shape, tf.dtypes.as_dtype(dtype), name=name)


def _numpy_tf_dtype(array: np.ndarray) -> Any:
    import tensorflow as tf

    if array.dtype.kind in "OSU":
        return tf.string
    return tf.dtypes.as_dtype(array.dtype)


def _name_outputs(model: Any, outputs: Any) -> dict[str, Any]:
    import keras

    if isinstance(outputs, Mapping):
        return {sanitize_name(str(k)): v for k, v in outputs.items()}
    flat = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    names: list[str] | None = None
    if isinstance(model, keras.Sequential) and model.layers:
        names = [model.layers[-1].name]
    else:
        declared = getattr(model, "output_names", None)
        if declared and len(declared) == len(flat):
            names = [str(n) for n in declared]
    if names is None or len(names) != len(flat):
        names = [f"output_{i}" for i in range(len(flat))]
    return dict(zip(_dedupe(names), flat, strict=True))


def _keras_input_name(tensor: Any, index: int) -> str:
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None) if history is not None else None
    name = getattr(operation, "name", None) or getattr(tensor, "name", None) or f"input_{index}"
    return str(name)


def _call_arg_name(model: Any) -> str:
    try:
        params = [p for p in inspect.signature(model.call).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return params[0].name if params else "inputs"


def _layers(model: Any) -> list[Any]:
    try:
        return list(model._flatten_layers(include_self=False, recursive=True))
    except Exception:
        return list(getattr(model, "layers", []))


def _vocabulary(model: Any) -> list[str]:
    import keras

    words: list[str] = []
    for layer in _layers(model):
        if isinstance(layer, (keras.layers.StringLookup, keras.layers.TextVectorization)):
            try:
                vocab = layer.get_vocabulary()
            except Exception:
                continue
            for word in vocab:
                word = word.decode() if isinstance(word, bytes) else str(word)
                if word and word != "[UNK]" and word not in words:
                    words.append(word)
    return words


def _unbuilt_error(model: Any) -> SignatureError:
    cls = type(model).__name__
    return SignatureError(
        f"cannot tell the input shape of {cls}: it is a subclassed model that was never built or "
        "called. Pass sample inputs, e.g. export_model(model, ..., samples={'inputs': "
        "np.zeros((1, 28, 28), 'float32')}) (CLI: --samples inputs.npz), or an input signature, "
        "e.g. input_signature=[tf.TensorSpec([None, 28, 28], tf.float32)]."
    )


def _specs_from_signature(model: Any, input_signature: Any) -> tuple[list[Any], str]:
    """(named specs, call style) from a user input signature: list/tuple/dict/one spec."""
    import keras

    def as_spec(spec: Any, name: str) -> Any:
        if isinstance(spec, keras.InputSpec):
            return _tf_spec(spec.shape, spec.dtype or "float32", name)
        shape = getattr(spec, "shape", None)
        if shape is None and not hasattr(spec, "dtype"):
            raise SignatureError(f"input signature entry {spec!r} is not a tf.TensorSpec/InputSpec")
        dims = None if shape is None or shape.rank is None else list(shape)
        return _tf_spec(dims, spec.dtype, name)

    if isinstance(input_signature, Mapping):
        style = "dict" if len(input_signature) > 1 else "single"
        return [as_spec(v, sanitize_name(str(k))) for k, v in input_signature.items()], style
    entries = list(input_signature) if isinstance(input_signature, (list, tuple)) else [input_signature]
    if len(entries) == 1:
        name = getattr(entries[0], "name", None) or _call_arg_name(model)
        return [as_spec(entries[0], sanitize_name(name))], "single"
    names = _dedupe([getattr(e, "name", None) or f"input_{i}" for i, e in enumerate(entries)])
    return [as_spec(e, n) for e, n in zip(entries, names, strict=True)], "list"


def _specs_from_samples(model: Any, samples: Any) -> tuple[list[Any], str]:
    if isinstance(samples, Mapping):
        return [_tf_spec(np.shape(v), _numpy_tf_dtype(np.asarray(v)), sanitize_name(str(k)))
                for k, v in samples.items()], "dict" if len(samples) > 1 else "single"
    if isinstance(samples, (list, tuple)):
        names = [f"input_{i}" for i in range(len(samples))]
        return [_tf_spec(np.shape(v), _numpy_tf_dtype(np.asarray(v)), n)
                for v, n in zip(samples, names, strict=True)], "list"
    array = np.asarray(samples)
    return [_tf_spec(array.shape, _numpy_tf_dtype(array), sanitize_name(_call_arg_name(model)))], "single"


def _keras_serving_model(source: LoadedSource, samples: Any, input_signature: Any) -> ServingModel:
    import keras

    model = source.model
    graph_inputs = None
    if isinstance(model, (keras.Sequential,)) or hasattr(model, "_inputs_struct"):
        try:
            graph_inputs = list(model.inputs) if model.built else None
        except (AttributeError, ValueError):
            graph_inputs = None
    built = True
    if graph_inputs:
        names = _dedupe([_keras_input_name(t, i) for i, t in enumerate(graph_inputs)])
        specs = [_tf_spec(tuple(t.shape), t.dtype, n) for t, n in zip(graph_inputs, names, strict=True)]
        struct = getattr(model, "_inputs_struct", None)
        if isinstance(model, keras.Sequential) or struct is None:
            style = "single" if len(specs) == 1 else "list"
        else:
            style = "struct"
    elif input_signature is not None:
        specs, style = _specs_from_signature(model, input_signature)
        built = model.built and not source.needs_build
    elif samples is not None:
        specs, style = _specs_from_samples(model, samples)
        built = model.built and not source.needs_build
    else:
        shapes = getattr(model, "_build_shapes_dict", None) or {}
        if not (model.built and getattr(model, "_called", False) or shapes) or len(shapes) != 1:
            raise _unbuilt_error(model)
        (shape,) = shapes.values()
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, type(None))) for d in shape
        ):
            raise _unbuilt_error(model)
        dtype = getattr(model, "input_dtype", None) or "float32"
        specs, style = [_tf_spec(tuple(shape), dtype, sanitize_name(_call_arg_name(model)))], "single"

    names = [s.name for s in specs]

    def call(tensors: Mapping[str, Any]) -> dict[str, Any]:
        flat = [tensors[n] for n in names]
        if style == "struct":
            args: Any = keras.tree.pack_sequence_as(model._inputs_struct, flat)
        elif style == "dict":
            args = dict(tensors)
        elif style == "single":
            args = flat[0]
        else:
            args = flat
        return _name_outputs(model, model(args, training=False))

    phrases = any(isinstance(layer, keras.layers.TextVectorization) for layer in _layers(model))
    return ServingModel(specs, call, source, _vocabulary(model), phrases, built=built)


def _saved_model_serving_model(source: LoadedSource) -> ServingModel:
    signature = source.model.signatures["serving_default"]
    kwargs = signature.structured_input_signature[1]
    # Keep the original shapes (a SavedModel may already fix the batch dim) but name the specs.
    import tensorflow as tf

    specs = [tf.TensorSpec(s.shape, s.dtype, name=k) for k, s in kwargs.items()]

    def call(tensors: Mapping[str, Any]) -> dict[str, Any]:
        return dict(signature(**{k: tensors[k] for k in kwargs}))

    return ServingModel(specs, call, source)


def prepare_serving_model(
    source: LoadedSource, samples: Any = None, input_signature: Any = None
) -> ServingModel:
    """Work out the named input specs and output naming of ``source``'s model."""
    if source.kind == "saved_model":
        return _saved_model_serving_model(source)
    return _keras_serving_model(source, samples, input_signature)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy file contents only: a read-only source must not make the staging dir read-only."""
    import os
    import shutil

    for dirpath, _dirnames, filenames in os.walk(src):
        target = dst / Path(dirpath).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            shutil.copyfile(Path(dirpath) / filename, target / filename)


def write_saved_model(serving: ServingModel, path: Path) -> None:
    """Write ``serving`` as a SavedModel to ``path``: a Keras model is traced with its named input
    specs; a SavedModel source is copied as is (all its signatures kept)."""
    import tensorflow as tf

    names = serving.input_names

    @tf.function(input_signature=serving.input_specs, autograph=False)
    def serve(*args: Any) -> dict[str, Any]:
        return serving.call(dict(zip(names, args, strict=True)))

    try:
        if serving.source.kind == "saved_model":
            # Re-tracing a SavedModel (TF1 ones especially) loses its init ops; the original
            # files already are exactly what TF Serving serves, so copy them verbatim.
            _copy_tree(Path(str(serving.source.path)), path)
        else:
            import keras

            archive = keras.export.ExportArchive()
            archive.track(serving.source.model)
            archive.add_endpoint("serving_default", serve)
            archive.write_out(str(path), verbose=False)
    except SignatureError:
        raise
    except Exception as exc:
        raise SignatureError(
            f"could not trace the model into a serving signature: {type(exc).__name__}: {exc}"
        ) from exc


def manifest_signature(serving: ServingModel, exported: Signature) -> Signature:
    """The exported ``serving_default`` with inputs in the model's order (not sorted)."""
    order = {n: i for i, n in enumerate(serving.input_names)}
    inputs = sorted(exported.inputs, key=lambda t: order.get(t.name, len(order)))
    return Signature(inputs=inputs, outputs=exported.outputs, name=exported.name,
                     method=exported.method)
