"""Atomic publish: SIGKILL at any stage leaves no visible version and does not block the next
export; concurrent exports get distinct versions; version discovery follows TF Serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from export_helpers import HERE, version_names
from tfship.export import export_model, inspect_model_dir
from tfship.export.publish import STAGING_PREFIX
from tfship.export.versions import list_versions, next_version

REPO = HERE.parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(extra)
    return env


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"exporter exited ({proc.returncode}) before {what}:\n{out}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


EXPORT_SCRIPT = textwrap.dedent("""
    import sys
    from export_zoo import build_regression
    from tfship.export import export_model
    r = export_model(build_regression(), sys.argv[1], "m")
    print("VERSION", r.version)
""")


@pytest.mark.parametrize("stage", ["saved_model_written", "before_rename"])
def test_sigkill_mid_export_leaves_no_version_and_next_export_works(base, tmp_path, stage):
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORT_SCRIPT, str(base)],
        env=_env(TFSHIP_TEST_PAUSE_AT=stage, TFSHIP_TEST_PAUSE_FILE=str(gate)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_for(Path(f"{gate}.reached").exists, 180, f"the exporter to reach {stage}", proc)
        model_dir = base / "m"
        staging = [p for p in model_dir.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir()]
        assert len(staging) == 1 and (staging[0] / "saved_model.pb").exists()  # really mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    assert version_names(model_dir) == [] and list_versions(model_dir) == {}
    assert inspect_model_dir(model_dir).staging_dirs  # visible to tfship, ignored by TF Serving

    # The dead exporter's locks died with it: the next export is not blocked and cleans up.
    result = export_model(__import__("export_zoo").build_regression(), base, "m")
    assert result.version == 1
    assert not [p for p in model_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert inspect_model_dir(model_dir, verify=True).ok


PUBLISH_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from tfship.export.publish import publish, staging_dir
    model_dir, go, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    while not go.exists():
        time.sleep(0.01)
    for i in range(count):
        with staging_dir(model_dir) as st:
            (st / "saved_model.pb").write_text(f"{os.getpid()}-{i}")
            version, path = publish(st, model_dir)
            print(version, flush=True)
""")


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "00000003").mkdir()  # an existing version, spelled with leading zeros
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISH_SCRIPT, str(model_dir), str(go), "5"],
                              env=_env(), stdout=subprocess.PIPE, text=True) for _ in range(4)]
    go.touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    versions = sorted(int(v) for out in outputs for v in out.split())
    assert versions == list(range(4, 24))
    # Every publication landed intact, none overwrote another.
    contents = {(model_dir / str(v) / "saved_model.pb").read_text() for v in versions}
    assert len(contents) == 20


def test_concurrent_exports_in_threads_get_distinct_versions(base):
    from export_zoo import build_regression

    models = [build_regression() for _ in range(3)]
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(models))

    def run(model) -> None:
        try:
            start.wait(timeout=30)
            results.append(export_model(model, base, "m").version)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(results) == [1, 2, 3]
    assert inspect_model_dir(base / "m", verify=True).ok


def test_version_discovery_matches_tf_serving(tmp_path):
    model_dir = tmp_path / "m"
    for name in ["00000123", "7", "non_numerical_child", "2.denied", ".tfship-tmp-1-ab", "-5"]:
        (model_dir / name).mkdir(parents=True)
    (model_dir / "999").write_text("a file, not a version")
    assert sorted(list_versions(model_dir)) == [7, 123]
    assert next_version(model_dir) == 124
    assert next_version(tmp_path / "new") == 1


def test_stale_staging_is_cleaned_but_live_staging_is_kept(tmp_path):
    from tfship.export.publish import clean_stale_staging, staging_dir

    model_dir = tmp_path / "m"
    model_dir.mkdir()
    dead = model_dir / f"{STAGING_PREFIX}1-dead"
    (dead / "variables").mkdir(parents=True)
    (model_dir / f"{STAGING_PREFIX}1-dead.lock").touch()  # lock file nobody holds
    (model_dir / f"{STAGING_PREFIX}2-orphan.lock").touch()  # died before creating its dir
    with staging_dir(model_dir) as live:
        assert clean_stale_staging(model_dir) == [dead]
        assert sorted(p.name for p in model_dir.iterdir()) == [live.name, f"{live.name}.lock"]
    assert list(model_dir.iterdir()) == []


def test_published_version_is_readable_like_its_model_dir_even_under_a_private_umask(tmp_path: Path) -> None:
    # The server may run as another user (the Docker image: uid 10001 on a bind mount).
    from tfship.export.publish import publish

    model_dir = tmp_path / "m"
    model_dir.mkdir(mode=0o755)
    os.chmod(model_dir, 0o755)
    old = os.umask(0o077)
    try:
        staging = model_dir / ".tfship-tmp-test"
        (staging / "variables").mkdir(parents=True)
        (staging / "saved_model.pb").write_bytes(b"pb")
        (staging / "variables" / "variables.index").write_bytes(b"ix")
        _, target = publish(staging, model_dir, 1)
    finally:
        os.umask(old)
    for path in [target, target / "variables"]:
        assert os.stat(path).st_mode & 0o055 == 0o055, oct(os.stat(path).st_mode)
    for path in [target / "saved_model.pb", target / "variables" / "variables.index"]:
        assert os.stat(path).st_mode & 0o044 == 0o044, oct(os.stat(path).st_mode)


def test_a_model_dir_made_by_another_exporter_meanwhile_is_shared(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The race two exporters of a new model run: both see models/m missing, one mkdir wins. The
    # loser is simulated here (the real race failed a CI dry run once), by the winner's mkdir
    # landing just before ours.
    from tfship.export.publish import prepare_model_dir

    real_mkdir = Path.mkdir

    def lose_the_race(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == "m" and not self.exists():
            real_mkdir(self)  # the other exporter
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", lose_the_race)
    model_dir, created = prepare_model_dir(tmp_path / "models", "m")
    assert model_dir.is_dir()
    assert created == [tmp_path / "models"]  # not ours to remove on failure
