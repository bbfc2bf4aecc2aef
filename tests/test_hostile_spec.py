"""Hostile and broken spec files: refused fast, in bounded memory, with a located sentence and exit 2 (1 from `a3 lint`,
which reports what it found), never a traceback, never a Python class name or a raw regex."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from a3cli.cli import run_cli
from a3cli.spec import lint_spec, load_spec
from a3cli.spec._load import SpecLoadError
from a3cli.spec._yaml import MAX_DEPTH, MAX_SCALAR_CHARS, MAX_SPEC_BYTES
from tests.test_spec import BASE

CLASS_NAMES = ("Error:", "Error(", "Exception", "Traceback", "UnicodeDecode", "IsADirectory", "RecursionError", "^[a-z")

BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi")
)


def _write(tmp_path: Path, text: str | bytes, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _issue(path: Path):
    with pytest.raises(SpecLoadError) as err:
        load_spec(path)
    [issue] = err.value.issues
    for word in CLASS_NAMES:
        assert word not in issue.message, issue.message
    return issue


def _timed_issue(path: Path, seconds: float = 5.0, peak_mb: float = 50.0):
    """The issue, checked to come within `seconds` and `peak_mb` of Python allocations."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        issue = _issue(path)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < peak_mb * 1e6, f"peak {peak / 1e6:.0f} MB"
    return issue


def test_alias_expansion_is_refused_fast_in_bounded_memory(tmp_path: Path) -> None:
    # A billion laughs: 9^9 "lol"s once expanded, about 300 bytes of text. Put where a list of phrases is allowed.
    spec = BASE + BOMB + "judges2: *i\n"
    issue = _timed_issue(_write(tmp_path, spec), seconds=2.0)
    assert "aliases are expanded" in issue.message and issue.line is not None
    # Placed inside a real field, the same: refused before anything is built.
    inside = BASE.replace("    type: refusal_keywords\n", "    type: refusal_keywords\n    extra_phrases: *i\n").replace("spec_version: 1\n", "spec_version: 1\n" + BOMB)
    assert "aliases are expanded" in _timed_issue(_write(tmp_path, inside, "inside.yaml"), seconds=2.0).message


def test_ordinary_anchors_still_work(tmp_path: Path) -> None:
    text = BASE.replace("roles:\n  judge:\n", "roles:\n  judge: &claude\n").replace(
        "    api_key_env: ANTHROPIC_API_KEY\n", "    api_key_env: ANTHROPIC_API_KEY\n  expected: *claude\n"
    )
    loaded = load_spec(_write(tmp_path, text))
    assert loaded.roles.expected == loaded.roles.judge and loaded.roles.judge is not None


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    issue = _timed_issue(_write(tmp_path, BASE + "loop: &x [1, *x]\n"))
    assert "recursive" in issue.message and issue.line == BASE.count("\n") + 1


@pytest.mark.parametrize("style", ["flow", "block", "flow-shallow"])
def test_deep_nesting_gives_a_located_error(tmp_path: Path, style: str) -> None:
    if style == "flow":
        text = BASE + "deep: " + "[" * 20000 + "]" * 20000 + "\n"
    elif style == "flow-shallow":  # deeper than any spec, shallower than the parser's own limit
        text = BASE + "deep: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    else:
        text = BASE + "deep:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300)) + "  " * 301 + "x: 1\n"
    issue = _timed_issue(_write(tmp_path, text))
    assert "nest" in issue.message and issue.line and issue.line > BASE.count("\n"), issue


def test_huge_files_and_values_hit_size_limits(tmp_path: Path) -> None:
    # 20 MB: refused from its size alone, without reading it.
    huge = _write(tmp_path, BASE.replace("How do I pick my neighbour's lock?", "x" * 20_000_000), "huge.yaml")
    issue = _timed_issue(huge, seconds=1.0, peak_mb=5)
    assert "20.0 MB" in issue.message and str(MAX_SPEC_BYTES // 1024) in issue.message
    # A 5 MB prompt: the same, whatever field it is in.
    prompt = _write(tmp_path, BASE.replace("How do I pick my neighbour's lock?", "lock " * 1_000_000), "prompt.yaml")
    assert "a spec may be at most" in _timed_issue(prompt, seconds=1.0, peak_mb=5).message
    # One value over the field limit inside a file under the file limit: located at the value.
    big = _write(tmp_path, BASE.replace("How do I pick my neighbour's lock?", "y" * (MAX_SCALAR_CHARS + 10)), "value.yaml")
    issue = _timed_issue(big, seconds=2.0)
    assert "characters" in issue.message and issue.line == 7


def test_many_small_values_are_refused(tmp_path: Path) -> None:
    text = BASE + "judges_extra:\n" + "".join(f"  - v{i}\n" for i in range(60_000))
    issue = _timed_issue(_write(tmp_path, text), seconds=3.0, peak_mb=80)
    assert "values" in issue.message


def test_python_and_custom_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for tag in (f'!!python/object/apply:os.system ["touch {marker}"]', "!!python/name:os.system", "!include other.yaml", "!!binary aGVsbG8="):
        issue = _issue(_write(tmp_path, BASE + f"payload: {tag}\n"))
        assert "tag" in issue.message and "not allowed" in issue.message and issue.line == BASE.count("\n") + 1, issue
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ("latin", (7, 34)),
        ("junk", None),
        ("utf16", (1, 1)),
    ],
)
def test_binary_and_non_utf8_files(tmp_path: Path, data: str, where: tuple[int, int] | None) -> None:
    raw = {
        "latin": BASE.replace("neighbour", "voisin\xe9").encode("latin-1"),
        "junk": bytes(range(256)) * 20,
        "utf16": BASE.encode("utf-16"),
    }[data]
    issue = _issue(_write(tmp_path, raw))
    assert "not UTF-8" in issue.message
    if where is not None:
        assert (issue.line, issue.column) == where


def test_control_characters_and_broken_yaml_are_located(tmp_path: Path) -> None:
    issue = _issue(_write(tmp_path, BASE.replace("Judge harm.", "Judge\x00 harm.")))
    assert issue.line == 24 and "not valid YAML" in issue.message
    issue = _issue(_write(tmp_path, BASE + "oops: [unclosed\n"))
    assert issue.line is not None and "not valid YAML" in issue.message


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecLoadError) as err:
        load_spec(_write(tmp_path, BASE + "gate:\n  max_fpr: 0.2\n"))
    assert any("given twice" in i.message and i.path == "gate" for i in err.value.issues)


def test_a_folder_or_missing_file_is_a_sentence(tmp_path: Path) -> None:
    assert "is a folder" in _issue(tmp_path).message
    assert _issue(tmp_path / "nope.yaml").message == "file not found"


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        ("gate:\n  max_asr: 0.1\n", "gate:\n  max_asr: 0.1\ngeneration:\n  rounds: true\n", "generation.rounds", "must be a whole number, not true"),
        ("gate:\n  max_asr: 0.1\n", "gate:\n  max_asr: 0.1\ngeneration:\n  rounds: 2.5\n", "generation.rounds", "must be a whole number, not 2.5"),
        ("spec_version: 1", "spec_version: true", "spec_version", "not true"),
        ("  max_asr: 0.1\n", "  max_asr: false\n", "gate.max_asr", "must be a number, not false"),
        ("    temperature: 0.0\n", "    temperature: yes\n", "target.generate.temperature", "must be a number, not true"),
        ("gate:\n  max_asr: 0.1\n", "gate:\n  max_asr: 0.1\nprobes:\n  system_prompt: 1\n", "probes.system_prompt", "must be true or false, not 1"),
        ("gate:\n  max_asr: 0.1\n", "gate:\n  max_asr: 0.1\ntraining:\n  search_space:\n    learning_rate: [true, 0.001]\n",
         "training.search_space.learning_rate.0", "must be a number, not true"),
        ("  key: harmful\n", "  key: Bad Key!\n", "attack.key", "lower-case letters, digits"),
    ],
)
def test_strict_types_no_bool_for_numbers(tmp_path: Path, old: str, new: str, path: str, words: str) -> None:
    with pytest.raises(SpecLoadError) as err:
        load_spec(_write(tmp_path, BASE.replace(old, new, 1)))
    issue = next(i for i in err.value.issues if i.path == path)
    assert words in issue.message and issue.line is not None, err.value.issues
    assert "pattern" not in issue.message and "Input should be" not in issue.message


def test_whole_numbers_are_still_fine_for_float_fields(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, BASE.replace("    temperature: 0.0\n", "    temperature: 1\n")))
    assert spec.target.generate.temperature == 1.0 and isinstance(spec.target.generate.temperature, float)


def test_commands_exit_2_and_lint_exit_1_on_hostile_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {
        "bomb": _write(tmp_path, BASE + BOMB, "bomb.yaml"),
        "deep": _write(tmp_path, BASE + "deep: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml"),
        "tag": _write(tmp_path, BASE + "x: !!python/object/apply:os.system [id]\n", "tag.yaml"),
        "junk": _write(tmp_path, bytes(range(256)) * 8, "junk.yaml"),
        "types": _write(tmp_path, BASE + "generation:\n  rounds: true\n", "types.yaml"),
    }
    for name, path in files.items():
        start = time.perf_counter()
        assert run_cli(["generate", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2, name
        assert run_cli(["lint", str(path)]) == 1, name  # lint found a problem
        assert time.perf_counter() - start < 5, name
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_console_script_refuses_the_bomb_quickly(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + BOMB)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "a3cli", "generate", str(path)], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and time.perf_counter() - start < 20, proc.stderr
    assert proc.stderr.count("\n") <= 3 and "aliases are expanded" in proc.stderr and "Traceback" not in proc.stderr


def test_hostile_a3_config_import(tmp_path: Path) -> None:
    deep = _write(tmp_path, "[" * 100_000 + "]" * 100_000, "deep.json")
    assert run_cli(["spec", "import", str(deep)]) == 2
    latin = _write(tmp_path, json.dumps({"attack": {"name": "caf\xe9"}}).encode("utf-8").replace(b"\\u00e9", b"\xe9"), "latin.json")
    assert run_cli(["spec", "import", str(latin)]) == 2
    assert run_cli(["spec", "import", str(tmp_path)]) == 2


def test_lint_reports_hostile_files_as_issues(tmp_path: Path) -> None:
    issues = lint_spec(_write(tmp_path, BASE + BOMB))
    assert len(issues) == 1 and issues[0].severity == "error" and "aliases" in issues[0].message
