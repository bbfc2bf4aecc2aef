"""`a3 spec import` of an A3 config whose `paths.dolci_responses_file` is relative to the A3 checkout: resolved against
the checkout (given with --a3-root, or guessed from where the config lives) and written relative to the new spec, or
replaced by a3's built-in general data with a note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a3cli.cli import run_cli
from a3cli.spec import lint_spec, load_spec
from tests.test_spec import A3_CONFIG


def _checkout(root: Path) -> Path:
    """An A3 checkout: configs/ holds the config, data/ the DOLCI responses the config names as data/dolci.jsonl."""
    (root / "configs").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "dolci.jsonl").write_text(json.dumps({"prompt": "Explain tides."}) + "\n")
    config = root / "configs" / "sycophancy.json"
    config.write_text(json.dumps({**A3_CONFIG, "paths": {"dolci_responses_file": "data/dolci.jsonl"}}))
    return config


def _general_source(spec_path: Path) -> Path:
    spec = load_spec(spec_path)
    return (spec_path.parent / spec.training.general_data.source).resolve()


def test_path_relative_to_the_checkout_is_guessed_from_the_config_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _checkout(tmp_path / "A3")
    out = tmp_path / "elsewhere" / "spec.yaml"
    out.parent.mkdir()
    assert run_cli(["spec", "import", str(config), "-o", str(out)]) == 0
    assert "found at" in capsys.readouterr().err
    assert _general_source(out) == (tmp_path / "A3" / "data" / "dolci.jsonl").resolve()
    assert not [i for i in lint_spec(out) if i.severity == "error" and i.path == "training.general_data.source"]


def test_path_resolved_against_a_given_checkout(tmp_path: Path) -> None:
    config = _checkout(tmp_path / "A3")
    moved = tmp_path / "copied-config.json"
    moved.write_text(config.read_text())  # a config copied away from its checkout: the guess cannot find the file
    out = tmp_path / "spec.yaml"
    assert run_cli(["spec", "import", str(moved), "-o", str(out), "--a3-root", str(tmp_path / "A3")]) == 0
    assert _general_source(out) == (tmp_path / "A3" / "data" / "dolci.jsonl").resolve()
    assert run_cli(["spec", "import", str(moved), "-o", str(tmp_path / "x.yaml"), "--a3-root", str(tmp_path / "nope")]) == 2


def test_missing_file_falls_back_to_the_builtin_data_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lonely.json"
    config.write_text(json.dumps({**A3_CONFIG, "paths": {"dolci_responses_file": "data/dolci.jsonl"}}))
    out = tmp_path / "spec.yaml"
    assert run_cli(["spec", "import", str(config), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "built-in general data" in err and "--a3-root" in err
    assert load_spec(out).training.general_data.source == "builtin"
    assert [i for i in lint_spec(out) if i.severity == "error"] == []
