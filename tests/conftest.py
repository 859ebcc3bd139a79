"""Fixtures shared by every test package.

Each test package (tests/export, tests/serving, tests/client, tests/e2e) has its own conftest.py
with the fixtures of its concern; only truly global ones live here.

TF Serving's test models come in two kinds:

* ``tf_serving_testdata``: stand-ins generated once per test run (tests/tf_serving_models.py), in
  the layout of TF Serving's testdata directory. Every test that just needs *a* half_plus_two uses
  these, so the suite runs on a fresh clone.
* ``tf_serving_shared``: TF Serving's real fixtures in ``../shared/testdata/tf-serving`` (CI lays
  ``../shared`` beside the checkout; ``TFSHIP_SHARED_DIR`` points elsewhere, e.g. from a git
  worktree). Only tests marked ``tf_serving_shared`` use them: byte-level compatibility with
  artifacts TF Serving itself produced. Without ../shared they skip, unless
  ``TFSHIP_REQUIRE_SHARED=1`` (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("TFSHIP_SHARED_DIR") or REPO_ROOT.parent / "shared")
#: Real TF Serving test models (see ../shared/testdata/tf-serving/README.md).
TF_SERVING_SHARED = SHARED_DIR / "testdata" / "tf-serving"
SHARED_MARKER = "tf_serving_shared"


def _shared_missing() -> str | None:
    if TF_SERVING_SHARED.is_dir():
        return None
    return (f"TF Serving's real test data not found at {TF_SERVING_SHARED} "
            "(CI keeps ../shared beside the repo; set TFSHIP_SHARED_DIR to use another copy)")


@pytest.hookimpl(tryfirst=True)  # before fixtures: a skipped test must not start a server
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(SHARED_MARKER) is None:
        return
    reason = _shared_missing()
    if reason is None:
        return
    if os.environ.get("TFSHIP_REQUIRE_SHARED") == "1":
        pytest.fail(f"TFSHIP_REQUIRE_SHARED=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tf_serving_testdata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like TF Serving's testdata, with models generated for this run."""
    pytest.importorskip("tensorflow")
    from tf_serving_models import generate

    return generate(tmp_path_factory.mktemp("tf-serving"))


@pytest.fixture
def tf_serving_shared(request: pytest.FixtureRequest) -> Path:
    """TF Serving's real test data (../shared); only for tests marked ``tf_serving_shared``."""
    if request.node.get_closest_marker(SHARED_MARKER) is None:
        pytest.fail(f"{request.node.nodeid} uses tf_serving_shared: mark it @pytest.mark.{SHARED_MARKER}")
    return TF_SERVING_SHARED
