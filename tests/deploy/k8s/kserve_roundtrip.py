"""Round-trip InferenceService documents through the `kserve` package's own model classes.

Run by the Python of a separate venv holding `kserve` (it pins protobuf<7, tfship needs >=7).
Reads a JSON list of documents on stdin, prints one JSON result per document: ``{"ok": true}`` or
``{"ok": false, "error": ...}``.

The generated OpenAPI classes silently drop keys they do not know when deserialising, so the round
trip is strict by construction: every key must be in its class's ``attribute_map`` (unknown or
misspelled fields are errors), every value is built into the declared type (the classes' own
validation runs), and serialising the objects back must give the input again (plus empty defaults).
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from typing import Any

import kserve.models
import kubernetes.client.models
from kserve import ApiClient

_NATIVE = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object,
           "date": datetime.date, "datetime": datetime.datetime}


def build(data: Any, type_name: str, path: str) -> Any:
    # kserve's classes spell containers list[T] / dict(str, T), kubernetes' List[T] / Dict[str, T]
    list_of = re.fullmatch(r"[lL]ist\[(.*)\]", type_name)
    if list_of:
        if not isinstance(data, list):
            raise TypeError(f"{path}: expected a list, got {data!r}")
        return [build(item, list_of.group(1), f"{path}[{i}]") for i, item in enumerate(data)]
    map_of = re.fullmatch(r"dict\([^,]*, (.*)\)|Dict\[[^,]*, (.*)\]", type_name)
    if map_of:
        if not isinstance(data, dict):
            raise TypeError(f"{path}: expected a map, got {data!r}")
        inner = map_of.group(1) or map_of.group(2)
        return {k: build(v, inner, f"{path}.{k}") for k, v in data.items()}
    if type_name in _NATIVE:
        if type_name != "object" and not isinstance(data, _NATIVE[type_name]):
            raise TypeError(f"{path}: expected {type_name}, got {data!r}")
        return data
    cls = getattr(kserve.models, type_name, None) or getattr(kubernetes.client.models, type_name)
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a {type_name} object, got {data!r}")
    by_json_name = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json_name))
    if unknown:
        raise KeyError(f"{path}: {type_name} has no field(s) {unknown}")
    kwargs = {by_json_name[k]: build(v, cls.openapi_types[by_json_name[k]], f"{path}.{k}")
              for k, v in data.items()}
    return cls(**kwargs)


def same(doc: Any, back: Any, path: str = "") -> None:
    """``back`` equals ``doc``, except for empty defaults the classes fill in (ModelSpec.name "")."""
    if isinstance(doc, dict) and isinstance(back, dict):
        for key in set(doc) | set(back):
            if key not in doc and back[key] in ("", [], {}):
                continue
            if key not in doc or key not in back:
                raise ValueError(f"round trip changed {path}.{key}: {doc.get(key)!r} -> {back.get(key)!r}")
            same(doc[key], back[key], f"{path}.{key}")
    elif isinstance(doc, list) and isinstance(back, list) and len(doc) == len(back):
        for i, (a, b) in enumerate(zip(doc, back, strict=True)):
            same(a, b, f"{path}[{i}]")
    elif doc != back or type(doc) is not type(back):
        raise ValueError(f"round trip changed {path}: {doc!r} -> {back!r}")


def main() -> None:
    results = []
    for doc in json.load(sys.stdin):
        try:
            obj = build(doc, "V1beta1InferenceService", "InferenceService")
            same(doc, ApiClient().sanitize_for_serialization(obj))
            results.append({"ok": True})
        except Exception as exc:  # reported to the test, which asserts on it
            results.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
