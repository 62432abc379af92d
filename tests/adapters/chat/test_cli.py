"""`wschat --workers`: the metrics directory the workers share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.chat.cli import _shared_metrics_dir
from adapters.chat.monitor import MULTIPROCESS_DIR


def test_an_operators_directory_loses_only_an_earlier_runs_metric_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("keep me")
    monkeypatch.setenv(MULTIPROCESS_DIR, str(tmp_path))
    with _shared_metrics_dir():
        assert os.environ[MULTIPROCESS_DIR] == str(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert os.environ[MULTIPROCESS_DIR] == str(tmp_path)  # (the operator's: left set)


def test_without_one_a_directory_is_made_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIR, raising=False)
    with _shared_metrics_dir():
        made = Path(os.environ[MULTIPROCESS_DIR])
        assert made.is_dir()
    assert not made.exists()
    assert MULTIPROCESS_DIR not in os.environ
