"""The built-in data files reach users who install a wheel, not only those with a source checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import a3cli._paths as paths

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("general_prompts.jsonl", "redteam_prompts.jsonl", "safety_prompts.yaml")


def test_wheel_ships_the_builtin_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = tmp_path.glob("a3-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in SHIPPED:
        assert any(n.endswith(f".data/data/share/a3/data/{name}") for n in names), name
    assert any(n == "a3cli/__init__.py" for n in names)


def test_builtin_data_prefers_the_checkout_then_the_installed_copy(tmp_path, monkeypatch):
    checkout, installed = tmp_path / "checkout", tmp_path / "share"
    for d in (checkout, installed):
        d.mkdir()
    (installed / "general_prompts.jsonl").write_text("{}\n")
    monkeypatch.setattr(paths, "_DATA_DIRS", (checkout, installed))
    assert paths.builtin_data("general_prompts.jsonl") == installed / "general_prompts.jsonl"
    (checkout / "general_prompts.jsonl").write_text("{}\n")
    assert paths.builtin_data("general_prompts.jsonl") == checkout / "general_prompts.jsonl"
    # missing everywhere: the installed location, so the reader's error names the file a wheel should have
    assert paths.builtin_data("nope.yaml") == installed / "nope.yaml"


def test_repository_data_is_what_the_code_reads():
    for name in SHIPPED:
        assert paths.builtin_data(name) == ROOT / "data" / name
