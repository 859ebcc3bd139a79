"""Models with TensorFlow Text ops in their graph (BERT-style preprocessing), as upstream serves them.

The model is built here with ``tensorflow_text``: WordPiece tokenization with offsets over a vocab
table, then a Viterbi ``ConstrainedSequence`` decode. With ``tfship[text]`` installed the server
registers the ops at start-up and serves it over gRPC and REST with the values TF computes in
process; without the package the load fails with the fix in the message.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from needs import need_module
from tfship.client import connect
from tfship.deploy.launch import free_port, start_model_server

pytestmark = pytest.mark.slow

VOCAB = ["[UNK]", "un", "##want", "##ed", "runn", "##ing", "the", "a", ","]
SENTENCES = np.array([b"unwanted running", b"the a ,"], dtype=object)

_BUILD = '''
import sys
import tensorflow as tf
import tensorflow_text as text

class Preprocess(tf.Module):
    def __init__(self, vocab):
        init = tf.lookup.KeyValueTensorInitializer(vocab, tf.range(len(vocab), dtype=tf.int64))
        self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
        self.tokenizer = text.WordpieceTokenizer(self.table, token_out_type=tf.int64, unknown_token="[UNK]")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, sentences):
        ids, _, _ = self.tokenizer.tokenize_with_offsets(tf.strings.split(sentences))  # WordpieceTokenizeWithOffsets
        flat = ids.merge_dims(-2, -1)
        scores = tf.one_hot(tf.cast(flat.to_tensor(default_value=0), tf.int32), 4)
        tags = text.viterbi_constrained_sequence(scores, flat.row_lengths(), use_log_space=True)  # ConstrainedSequence
        return {"ids": flat.to_tensor(default_value=-1), "tags": tags.to_tensor(default_value=-1)}

model = Preprocess(%r)
out = model.serve(tf.constant(%r))
tf.saved_model.save(model, sys.argv[1], signatures={"serving_default": model.serve})
import numpy as np
np.savez(sys.argv[2], ids=out["ids"].numpy(), tags=out["tags"].numpy())
'''


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """models/text/1 with TF Text ops, and what TF computes for SENTENCES in process."""
    need_module("tensorflow_text", "'tfship[text]'")
    root = tmp_path_factory.mktemp("text-model")
    code = _BUILD % (VOCAB, [s.decode() for s in SENTENCES])
    # Its own process: importing tensorflow_text here would register the ops in the test process too.
    subprocess.run([sys.executable, "-c", code, str(root / "text" / "1"), str(root / "expected.npz")],
                   check=True, capture_output=True, timeout=600)
    graph = (root / "text" / "1" / "saved_model.pb").read_bytes()
    assert b"WordpieceTokenizeWithOffsets" in graph and b"ConstrainedSequence" in graph
    with np.load(root / "expected.npz") as data:
        return root / "text", {k: data[k] for k in data.files}


def test_a_model_with_tf_text_ops_serves_over_grpc_and_rest(text_model: tuple[Path, dict[str, np.ndarray]]) -> None:
    base, expected = text_model
    with start_model_server(base, "text", timeout=300) as server:
        for url in (server.grpc_url, server.rest_url):
            with connect(url) as client:
                answer = client.predict_detailed("text", {"text": SENTENCES})
            assert sorted(answer.outputs) == ["ids", "tags"], url
            for name, want in expected.items():
                np.testing.assert_array_equal(answer.outputs[name], want, err_msg=f"{name} over {url}")
        log = Path(server.log_path).read_text(errors="replace")
    assert "Registered custom ops from tensorflow-text" in log


_WITHOUT_TEXT = '''
import sys
sys.modules["tensorflow_text"] = None  # as if tensorflow-text were not installed
from tfship.serving.main import main
main(sys.argv[1:])
'''


def test_without_tensorflow_text_the_load_error_names_the_package(
        text_model: tuple[Path, dict[str, np.ndarray]]) -> None:
    base, _ = text_model
    args = [f"--port={free_port()}", "--host=127.0.0.1", "--model_name=text", f"--model_base_path={base}",
            "--max_num_load_retries=0"]
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TEXT, *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 255, (proc.stdout, proc.stderr[-2000:])
    assert "Failed to start server." in proc.stdout
    assert "Op type not registered 'WordpieceTokenizeWithOffsets'" in proc.stdout
    assert "pip install 'tfship[text]'" in proc.stdout
