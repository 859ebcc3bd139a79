"""Ops outside core TensorFlow that upstream's model server links in: TensorFlow Text's.

``tensorflow_model_server`` is built with TF Text's kernels, so a SavedModel with BERT-style
preprocessing in its graph (``WordpieceTokenizeWithOffsets``, ``ConstrainedSequence``, ...) loads
there. Python registers those ops when ``tensorflow_text`` is imported, so the server imports it
once before loading any model when it is installed (the ``tfship[text]`` extra), and a load that
still meets an unknown op names the package to install.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading

__all__ = ["register_custom_ops", "registered_packages", "missing_op_hint"]

log = logging.getLogger("tfship.serving")

#: (module, pip requirement) of op libraries imported at start-up when installed.
OP_PACKAGES = (("tensorflow_text", "tensorflow-text"),)
#: Op name prefixes/names TF Text registers, to name the package when one is missing.
_TEXT_OP = re.compile(r"Wordpiece|Sentencepiece|ConstrainedSequence|UnicodeScript|Whitespace|RegexSplit|"
                      r"SplitMergeTokenize|NormalizeUTF8|CaseFoldUTF8|MaxSpanningTree|FastBertNormalize|"
                      r"FastWordpiece|ByteSplit|BoiseTagger|MitieTokenize|RoundRobinTrim|"
                      r"BertNormalize|TFText|Ngrams|SentenceFragments|ViterbiConstrainedSequence|"
                      r"UnicodeScriptTokenize|ToDense|SplitMerge|HubModule|TokenizeWithOffsets")

_lock = threading.Lock()
_registered: list[str] | None = None


def register_custom_ops() -> list[str]:
    """Import every installed op package once (registering its ops); return the ones imported."""
    global _registered
    with _lock:
        if _registered is None:
            _registered = []
            for module, requirement in OP_PACKAGES:
                try:
                    imported = importlib.import_module(module)
                except ImportError:
                    continue
                except Exception as exc:  # noqa: BLE001 - a broken build must not stop the server
                    log.warning("%s is installed but does not import (%s: %s); models using its ops "
                                "will fail to load: pip install '%s' matching TensorFlow's version",
                                module, type(exc).__name__, exc, requirement)
                    continue
                _registered.append(f"{requirement} {getattr(imported, '__version__', '?')}")
            if _registered:
                log.info("Registered custom ops from %s", ", ".join(_registered))
        return list(_registered)


def registered_packages() -> list[str]:
    """The op packages :func:`register_custom_ops` imported (empty before it ran)."""
    return list(_registered or [])


def missing_op_hint(message: str) -> str | None:
    """For an "Op type not registered 'X'" load error: which package to install, or None."""
    match = re.search(r"Op type not registered '([^']+)'", message)
    if match is None:
        return None
    op = match.group(1)
    if _TEXT_OP.search(op):
        return (f"The model uses {op}, an op of TensorFlow Text: install it in the server's "
                "environment (pip install 'tfship[text]', i.e. tensorflow-text matching TensorFlow's "
                "version; the tensorflow/serving image links these ops already) and restart the server.")
    return (f"The model uses {op}, an op this TensorFlow does not have: install the package that "
            "defines it (for TensorFlow Text ops: pip install 'tfship[text]') and restart the server.")
