"""tf.Example inputs of Classify / Regress / MultiInference as the serialized strings fed to models.

TF Serving feeds one DT_STRING element per example; with ``example_list_with_context`` each
element is ``serialize(context) + serialize(example)``: concatenated protobuf encodings parse as a
merge, so the example's features win over the context's (TF Serving compat spec §5.2).
"""

from __future__ import annotations

from typing import Any

from tfship.errors import InvalidArgumentError

__all__ = ["serialized_examples"]


def serialized_examples(input_proto: Any) -> list[bytes]:
    """The serialized examples of a ``tensorflow.serving.Input`` message, one per example.

    >>> from tensorflow_serving.apis import input_pb2
    >>> inp = input_pb2.Input()
    >>> _ = inp.example_list.examples.add()
    >>> serialized_examples(inp)
    [b'']

    Raises InvalidArgumentError ``Input is empty.`` when there is no example.
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [example.SerializeToString() for example in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        listed = input_proto.example_list_with_context
        context = listed.context.SerializeToString() if listed.HasField("context") else b""
        examples = [context + example.SerializeToString() for example in listed.examples]
    else:
        examples = []
    if not examples:
        raise InvalidArgumentError(
            "Input is empty. Send at least one tf.Example in input.example_list.examples "
            "(or example_list_with_context.examples)."
        )
    return examples
