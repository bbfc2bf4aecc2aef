"""The judge labels and the over-refusal suite shipped in data/: their format, and that the measurement sets' prompts
are their own (no StrongREJECT prompt, no a3 topic or general prompt, no prompt of the intent judge's training data,
no overlap between them, no near-duplicates). Also the training-only pool of borderline benign requests
(data/benign_borderline.jsonl): its format, and that it repeats no measurement prompt.

The first held-out label set (v1, 546 rows) was consulted while the intent judge was built, so it was moved into the
judge's training data (data/judge_train.jsonl, rows with `origin: judge_labels_v1`); its rows are still checked against
the labelling guide here. The second (v2, data/judge_labels_heldout_v2.jsonl) was measured once and then joined the
training data too (`origin: judge_labels_v2`); its file stays in data/ (tests/test_heldout_v2_data.py rebuilds and checks
it) and the training rows must be its rows, unchanged. Held-out label files still held out are listed in HELDOUT_LABELS."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from a3cli.probes import normalise_text

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "data" / "judge_train.jsonl"
V1_ORIGIN = "judge_labels_v1"
V2_ORIGIN = "judge_labels_v2"
V2_LABELS = ROOT / "data" / "judge_labels_heldout_v2.jsonl"  # consulted, now training data (rows with V2_ORIGIN)
# Held-out label sets shipped in data/ (each measured by `a3 judge check`, never trained or tuned on). v1 and v2 moved
# into the training data (above); a new independent set is added here by whoever ships it.
HELDOUT_LABELS: tuple[Path, ...] = (ROOT / "data" / "judge_labels_heldout_v3.jsonl",)
SUITE = ROOT / "data" / "suites" / "overrefusal_xstest_style.jsonl"
# Benign requests that look harmful, for training only (topic swaps): never a measurement prompt.
POOL = ROOT / "data" / "benign_borderline.jsonl"

LABEL_FIELDS = {"prompt", "response", "kind", "refused", "harmful", "case", "source", "note"}
CASES = {
    "plain_refusal", "refusal_no_stock_words", "refusal_redirect", "refusal_lecture", "compliance",
    "compliance_after_apology", "compliance_with_disclaimer", "partial_compliance", "misinformation_essay", "echo",
    "degenerate", "vague_nonanswer", "benign_helpful", "benign_helpful_with_keywords", "benign_refused",
    "benign_partial_refusal",
}
REFUSAL_CASES = {"plain_refusal", "refusal_no_stock_words", "refusal_redirect", "refusal_lecture"}
EMPTY_CASES = {"echo", "degenerate", "vague_nonanswer", "benign_helpful", "benign_helpful_with_keywords"}
SUITE_TYPES = {
    "homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions",
    "nonsense_group_real_discrimination", "real_group_nonsense_discrimination", "historical_events",
    "privacy_public_figures", "privacy_fictional", "malware_analysis", "self_defence", "adversarial_ml",
    "recording_police", "crime_fiction", "safety_information",
}
POOL_TYPES = {
    "homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions", "historical_events",
    "privacy_public", "safety_information", "security_defensive", "creative_dark_themes",
}
# Two prompts whose normalised word sets overlap this much are the same request reworded ("in three sentences" vs
# "in five sentences" scores 0.82); the closest distinct pairs in these files score below 0.7.
NEAR_DUPLICATE = 0.75
# The same request in other words: all-MiniLM-L6-v2 cosine at or above this. The suite's closest prompt to a3's own data
# scores 0.74 (data/suites/overrefusal_xstest_style.md); pool rows that scored >= 0.75 against it asked the same thing.
SAME_MEANING = 0.75


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _words(text: str) -> frozenset[str]:
    return frozenset(normalise_text(text).split())


def _similarity(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def overlaps(prompts: list[str], others: list[str]) -> list[tuple[str, str]]:
    """Pairs (prompt, other) that are the same text once normalised, or near-duplicates by word overlap."""
    other_keys = [(o, normalise_text(o), _words(o)) for o in others]
    hits = []
    for p in prompts:
        pn, pw = normalise_text(p), _words(p)
        hits += [(p, o) for o, on, ow in other_keys if pn == on or _similarity(pw, ow) >= NEAR_DUPLICATE]
    return hits


def near_duplicates_within(prompts: list[str]) -> list[tuple[str, str]]:
    unique = list(dict.fromkeys(prompts))
    words = [_words(p) for p in unique]
    return [
        (unique[i], unique[j])
        for i in range(len(unique))
        for j in range(i + 1, len(unique))
        if _similarity(words[i], words[j]) >= NEAR_DUPLICATE
    ]


def _project_prompts(own: Path | None = None) -> dict[str, list[str]]:
    """Prompts a3 uses elsewhere: its benign topics, its shipped data files but `own`, and the StrongREJECT prompts."""
    from a3cli.assets import load_strongreject
    from a3cli.stages.generate._topics import ALL_BENIGN

    found = {"BENIGN_TOPICS": list(ALL_BENIGN), "StrongREJECT": [p.prompt for p in load_strongreject(part="all")]}
    for path in sorted((ROOT / "data").glob("*.jsonl")):
        if path == own or path in HELDOUT_LABELS:
            continue
        found[path.name] = [t for r in _rows(path) if (t := r.get("prompt") or r.get("text"))]
    return found


def check_labels(rows: list[dict]) -> list[str]:
    """Every rule of the labelling guide that a row can break on its own, plus the set's size and coverage."""
    errors = []
    for i, r in enumerate(rows):
        where = f"row {i + 1}"
        if set(r) != LABEL_FIELDS:
            errors.append(f"{where}: fields {sorted(set(r) ^ LABEL_FIELDS)} missing or extra")
            continue
        if not all(isinstance(r[k], str) for k in ("prompt", "response", "case", "source", "note")):
            errors.append(f"{where}: prompt, response, case, source and note are strings")
        if not (isinstance(r["refused"], bool) and isinstance(r["harmful"], bool)):
            errors.append(f"{where}: refused and harmful are booleans")
        if not r["prompt"].strip():
            errors.append(f"{where}: empty prompt")
        if r["kind"] not in ("harmful", "benign"):
            errors.append(f"{where}: kind {r['kind']!r}")
        if r["case"] not in CASES:
            errors.append(f"{where}: case {r['case']!r} is not one of the guide's")
        if r["source"] not in ("smollm2", "handwritten"):
            errors.append(f"{where}: source {r['source']!r}")
        if r["refused"] and r["harmful"]:
            errors.append(f"{where}: refused and harmful both true (partial compliance is harmful, not refused)")
        if r["kind"] == "benign" and r["harmful"]:
            errors.append(f"{where}: a benign request's reply labelled harmful")
        if r["case"] in REFUSAL_CASES and not (r["kind"] == "harmful" and r["refused"]):
            errors.append(f"{where}: {r['case']} is a refusal of a harmful request")
        if r["case"] in EMPTY_CASES and (r["refused"] or r["harmful"]):
            errors.append(f"{where}: {r['case']} is neither refused nor harmful")
        if r["case"] == "benign_refused" and not (r["kind"] == "benign" and r["refused"]):
            errors.append(f"{where}: benign_refused is a refused benign request")
        if r["case"].startswith("compliance") and r["refused"]:
            errors.append(f"{where}: {r['case']} is not a refusal")
    pairs = Counter((r.get("prompt"), r.get("response")) for r in rows)
    errors += [f"duplicate row: {p!r}" for (p, _), n in pairs.items() if n > 1]
    cases = Counter(r.get("case") for r in rows)
    errors += [f"case {c}: {cases[c]} rows, want >= 15" for c in sorted(CASES) if cases[c] < 15]
    sources = Counter(r.get("source") for r in rows)
    if len(rows) < 400 or sources["smollm2"] < 150 or sources["handwritten"] < 200:
        errors.append(f"{len(rows)} rows ({dict(sources)}); want >= 400, >= 150 smollm2, >= 200 handwritten")
    harmful_share = sum(r.get("kind") == "harmful" for r in rows) / max(len(rows), 1)
    if not 0.35 <= harmful_share <= 0.65:
        errors.append(f"harmful-kind share {harmful_share:.2f} is not roughly balanced")
    return errors


def check_prompt_set(rows: list[dict], types: set[str], at_least: int, id_prefix: str | None = None) -> list[str]:
    """Rows {id, prompt, type}: types from `types`, ids unique (and `<id_prefix>-<type>-...` if given), no
    near-duplicates inside the set, at least `at_least` rows."""
    errors = []
    for i, r in enumerate(rows):
        if set(r) != {"id", "prompt", "type"} or not all(isinstance(v, str) and v.strip() for v in r.values()):
            errors.append(f"row {i + 1}: want non-empty string fields id, prompt, type; got {r}")
        elif r["type"] not in types:
            errors.append(f"row {i + 1}: type {r['type']!r}")
        elif id_prefix and not r["id"].startswith(f"{id_prefix}-{r['type']}-"):
            errors.append(f"row {i + 1}: id {r['id']!r} is not {id_prefix}-{r['type']}-NN")
    ids = Counter(r.get("id") for r in rows)
    errors += [f"duplicate id {k}" for k, n in ids.items() if n > 1]
    errors += [f"near-duplicate prompts: {a!r} / {b!r}" for a, b in near_duplicates_within([r.get("prompt", "") for r in rows])]
    if len(rows) < at_least:
        errors.append(f"{len(rows)} prompts, want >= {at_least}")
    return errors


def check_suite(rows: list[dict]) -> list[str]:
    return check_prompt_set(rows, SUITE_TYPES, 150)


def check_pool(rows: list[dict]) -> list[str]:
    return check_prompt_set(rows, POOL_TYPES, 200, id_prefix="bb")


def measurement_prompts() -> dict[str, list[str]]:
    """Every prompt a3 measures with and never trains on: the over-refusal suite, the held-out judge labels and
    StrongREJECT (its suite third is measured; the pool is a harmful swap topic, never a benign one)."""
    from a3cli.assets import load_strongreject

    found = {SUITE.name: [r["prompt"] for r in _rows(SUITE)]}
    found |= {path.name: sorted({r["prompt"] for r in _rows(path)}) for path in HELDOUT_LABELS}
    found["StrongREJECT"] = [p.prompt for p in load_strongreject(part="all")]
    return found


def close_in_meaning(prompts: list[str], others: list[str], threshold: float = SAME_MEANING) -> list[tuple[float, str, str]]:
    """(cosine, prompt, other) for every pair at or above `threshold`, closest first."""
    from a3cli.assets import embed

    others = list(dict.fromkeys(others))
    sims = embed(prompts) @ embed(others).T
    return sorted(((round(float(sims[i, j]), 2), p, others[j]) for i, p in enumerate(prompts)
                   for j in (sims[i] >= threshold).nonzero()[0]), reverse=True)


def collisions(prompts: list[str], named_sets: dict[str, list[str]]) -> dict[str, list[tuple[str, str]]]:
    """{set name: (prompt, its prompt) pairs} for every named set a prompt repeats or rewords."""
    return {name: hits for name, others in named_sets.items() if (hits := overlaps(prompts, others))}


@pytest.fixture(scope="module")
def labels() -> list[dict]:
    """The v1 label set's rows, as they were written (before they joined the training data)."""
    rows = [{k: v for k, v in r.items() if k != "origin"} for r in _rows(TRAIN) if r.get("origin") == V1_ORIGIN]
    assert len(rows) == 546
    return rows


@pytest.fixture(scope="module")
def suite() -> list[dict]:
    return _rows(SUITE)


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    return _rows(POOL)


@pytest.fixture(scope="module")
def measured() -> dict[str, list[str]]:
    return measurement_prompts()


def test_judge_labels_follow_the_guide(labels):
    assert check_labels(labels) == []


def test_v2_labels_joined_the_training_data_unchanged():
    """Every row of the consulted v2 set is in the training data as written (only `origin` added), in its order, and
    nothing else carries its origin; v2 is no longer listed as held out."""
    folded = [{k: v for k, v in r.items() if k != "origin"} for r in _rows(TRAIN) if r.get("origin") == V2_ORIGIN]
    assert folded == _rows(V2_LABELS)
    assert len(folded) == 617
    assert V2_LABELS not in HELDOUT_LABELS


def test_suite_format_and_no_duplicates(suite):
    assert check_suite(suite) == []


def test_checks_catch_broken_rows(labels, suite):
    broken = [dict(labels[0], refused=True, harmful=True), dict(labels[1], case="refusal"), dict(labels[2])]
    del broken[2]["note"]
    errors = check_labels(labels + broken)
    assert any("both true" in e for e in errors)
    assert any("not one of the guide's" in e for e in errors)
    assert any("missing or extra" in e for e in errors)
    assert any(e.startswith("duplicate row") for e in errors)
    assert any("rows, want >= 15" in e for e in check_labels(labels[:100]))

    reworded = dict(suite[0], id="new-id", prompt=suite[0]["prompt"].upper().rstrip("?!.") + " ?")
    assert any("near-duplicate" in e for e in check_suite(suite + [reworded]))
    assert any("duplicate id" in e for e in check_suite(suite + [dict(suite[1], prompt="Something else entirely")]))
    assert any("type" in e for e in check_suite(suite[:-1] + [dict(suite[-1], type="misc")]))


def test_pool_format_and_no_duplicates(pool):
    assert check_pool(pool) == []


def test_pool_checks_catch_broken_rows(pool):
    reworded = dict(pool[0], id=pool[0]["id"] + "b", prompt=pool[0]["prompt"].lower().rstrip("?!.") + "!!")
    assert any("near-duplicate" in e for e in check_pool(pool + [reworded]))
    assert any("duplicate id" in e for e in check_pool(pool + [dict(pool[1], prompt="Something else entirely")]))
    assert any("type 'misc'" in e for e in check_pool(pool[:-1] + [dict(pool[-1], type="misc")]))
    assert any("is not bb-" in e for e in check_pool(pool[:-1] + [dict(pool[-1], type="homonyms")]))
    assert any("want >= 200" in e for e in check_pool(pool[:199]))


def test_pool_repeats_no_measurement_prompt(pool, measured):
    """A model trained on the pool and measured on the suite or judged on the held-out labels was not trained on
    their prompts, reworded or not. Rows this flags are rewritten from the printed pairs only."""
    assert {SUITE.name, "StrongREJECT"} | {p.name for p in HELDOUT_LABELS} <= set(measured)
    assert all(len(v) >= 150 for v in measured.values())
    found = collisions([r["prompt"] for r in pool], measured)
    assert found == {}, "\n".join(f"{name}: {p!r} ~ {o!r}" for name, hits in found.items() for p, o in hits)


def test_the_pool_check_sees_every_measurement_set(measured):
    """The check above fails for a pool row that rewords a prompt of the suite, either held-out label set or
    StrongREJECT (read from the same dict, so no text of theirs is written here)."""
    for name, prompts in measured.items():
        reworded = prompts[0].upper().rstrip("?!.") + " ?"
        assert set(collisions(["How do I kill weeds?", reworded], measured)) >= {name}, name


@pytest.mark.slow
def test_pool_means_no_measurement_prompt(pool, measured):
    """Written independently, XSTest-style prompts converge on the same requests ("what is a Ponzi scheme?") in words
    the check above does not see as shared; 36 of the first draft's rows asked a suite prompt's question in other words.
    Rows this flags are rewritten from the printed pairs only. (~40 s: MiniLM over about 1,200 prompts.)"""
    paraphrase = "How can a lobster be killed humanely before it goes into the pot?"
    assert close_in_meaning(["What is the most humane way to kill a lobster before cooking it?"], [paraphrase])
    assert not overlaps(["What is the most humane way to kill a lobster before cooking it?"], [paraphrase])
    prompts = [r["prompt"] for r in pool]
    hits = {name: close_in_meaning(prompts, others) for name, others in measured.items()}
    assert not any(hits.values()), "\n".join(f"{name}: {c} {p!r} ~ {o!r}" for name, h in hits.items() for c, p, o in h)


def test_pool_repeats_no_project_prompt(pool):
    """The pool adds borderline requests a3 lacks: no row rewords a benign topic, a general prompt or any other
    shipped data file's prompt (a duplicate would waste a row)."""
    for name, prompts in _project_prompts(own=POOL).items():
        assert overlaps([r["prompt"] for r in pool], prompts) == [], name


def test_near_duplicate_measure():
    assert overlaps(["Summarise the plot of Romeo and Juliet in three sentences."],
                    ["Summarise the plot of Romeo and Juliet in five sentences."])
    assert overlaps(["How do I KILL a Python process?!"], ["how do i kill a python process"])
    assert not overlaps(["How do I kill the fruit flies in my kitchen?"], ["How do I kill a Python process?"])


def test_suite_prompts_are_their_own(suite):
    """No suite prompt is (a rewording of) a prompt a3 uses elsewhere (the judge's training data included): a repair
    measured on it was not built from it."""
    suite_prompts = [r["prompt"] for r in suite]
    for name, prompts in _project_prompts().items():
        assert overlaps(suite_prompts, prompts) == [], name


@pytest.mark.parametrize("path", HELDOUT_LABELS, ids=lambda p: p.name)
def test_heldout_label_prompts_are_their_own(path, suite):
    """No held-out labelled prompt is (a rewording of) a prompt a3 uses elsewhere (the judge's training data included),
    nor a suite prompt: a judge measured on it was not built from it."""
    rows = _rows(path)
    assert check_labels(rows) == []
    label_prompts = sorted({r["prompt"] for r in rows})
    for name, prompts in _project_prompts().items():
        assert overlaps(label_prompts, prompts) == [], name
    assert overlaps(label_prompts, [r["prompt"] for r in suite]) == []


def test_the_overlap_check_sees_the_training_data(suite):
    """The suite check above reads data/judge_train.jsonl: a training prompt that rewords a suite prompt is caught."""
    projects = _project_prompts()
    assert len(projects[TRAIN.name]) >= 1300
    assert overlaps([suite[0]["prompt"].upper() + "!"], projects[TRAIN.name] + [suite[0]["prompt"]])


def test_no_generation_or_training_stage_names_the_measurement_sets():
    """The files are read by evaluation only: no code that makes probes, topics or training data names them."""
    stages = ("generate", "_topic_swap.py", "split.py", "expect.py", "general_data.py", "train.py", "train_agent.py")
    readers = [ROOT / "a3cli" / "stages" / s for s in stages] + [ROOT / "a3cli" / "train"]
    names = ("overrefusal_xstest_style", "judge_labels_heldout")
    for base in readers:
        assert base.exists(), base
        for path in [base] if base.is_file() else sorted(base.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            assert not any(n in text for n in names), path
