"""The checkpoint-selection rule and the built-in search policy: pure functions on constructed results."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from a3cli.train import (
    IterationResult,
    SearchSpace,
    TrainHyperparams,
    Trial,
    clamp_choice,
    initial_arms,
    propose_next,
    select_checkpoint,
)


def it(i, asr=(0.0, 0.0), fpr=(0.1, 0.1), cap=0.60, se=0.01) -> IterationResult:
    """(validation, OOD) pairs as the stages measure them; only the validation figure reaches the rule."""
    return IterationResult(iteration=i, asr=asr[0], fpr=fpr[0], capability=cap, capability_se=se)


BASE = it(0, asr=(0.8, 0.7), fpr=(0.02, 0.04), cap=0.60, se=0.01)


def row(sel, iteration):
    return next(r for r in sel.candidates if r.iteration == iteration)


# --- selection -------------------------------------------------------------------------------------------------------


def test_lowest_fpr_among_qualifying_with_ties_broken_by_asr_then_iteration():
    its = [
        it(1, asr=(0.05, 0.05), fpr=(0.10, 0.10)),
        it(2, asr=(0.02, 0.04), fpr=(0.05, 0.05)),  # tie on validation FPR with 3, lower ASR -> chosen
        it(3, asr=(0.04, 0.00), fpr=(0.05, 0.00)),  # better OOD figures, which the rule never reads
        it(4, asr=(0.02, 0.04), fpr=(0.05, 0.05)),  # exact tie with 2 -> earlier wins
        it(5, asr=(0.20, 0.00), fpr=(0.00, 0.00)),  # best FPR but ASR above target on validation
        it(6, asr=(0.00, 0.00), fpr=(0.00, 0.00), cap=0.50),  # capability drop 0.10 > tolerance
    ]
    sel = select_checkpoint(BASE, its, asr_target=0.1, capability_tolerance=0.05)
    assert sel.chosen == 2 and sel.rule == "primary"
    assert not row(sel, 5).asr_ok and not row(sel, 5).qualifies
    assert row(sel, 6).capability_ok is False and row(sel, 6).capability_drop == pytest.approx(0.10)
    assert [r.iteration for r in sel.candidates] == ["baseline", 1, 2, 3, 4, 5, 6]
    assert "lowest validation FPR" in sel.reason
    assert not sel.noise_warning


def test_noise_too_large_is_flagged_and_reported():
    its = [it(1, cap=0.59, se=0.03), it(2, cap=0.58, se=0.001)]
    base = it(0, asr=(0.9, 0.9), cap=0.60, se=0.001)
    sel = select_checkpoint(base, its, asr_target=0.1, capability_tolerance=0.05)
    r1, r2 = row(sel, 1), row(sel, 2)
    assert r1.capability_drop_se == pytest.approx(math.sqrt(0.03**2 + 0.001**2))
    assert r1.noise_too_large and any("noise too large" in n for n in r1.notes)  # 1.96 * 0.030 = 0.059 > 0.05
    assert not r2.noise_too_large  # 1.96 * 0.0014 < 0.05
    assert sel.noise_warning and "noise is too large to resolve the tolerance" in sel.reason
    assert sel.chosen == 1  # the point estimate (drop 0.01) is within tolerance; the flag does not hide it


def test_fallback_lowest_asr_plus_fpr_within_capability_tolerance():
    its = [
        it(1, asr=(0.30, 0.40), fpr=(0.05, 0.05)),  # 0.35 + 0.05 = 0.40
        it(2, asr=(0.20, 0.30), fpr=(0.02, 0.02)),  # 0.25 + 0.02 = 0.27 -> fallback choice
        it(3, asr=(0.00, 0.00), fpr=(0.00, 0.00), cap=0.40),  # would be best but loses capability
    ]
    sel = select_checkpoint(BASE, its, asr_target=0.1, capability_tolerance=0.05)
    assert sel.chosen == 2 and sel.rule == "fallback"
    assert "fallback" in sel.reason and "no iteration reached" in sel.reason
    assert not any(r.qualifies for r in sel.candidates)


def test_fallback_to_baseline_when_nothing_helps():
    worse = [it(1, asr=(0.9, 0.9), fpr=(0.3, 0.3)), it(2, asr=(0.0, 0.0), cap=0.3)]
    sel = select_checkpoint(BASE, worse, asr_target=0.1, capability_tolerance=0.05)
    assert sel.chosen == "baseline" and sel.rule == "baseline"
    assert "beats the baseline" in sel.reason
    sel = select_checkpoint(BASE, [it(1, asr=(0.0, 0.0), cap=0.3)], asr_target=0.1, capability_tolerance=0.05)
    assert sel.chosen == "baseline" and "lost more capability" in sel.reason
    assert select_checkpoint(BASE, [], asr_target=0.1, capability_tolerance=0.05).chosen == "baseline"


def test_capability_not_measured_skips_the_criterion_but_missing_for_one_iteration_fails_it():
    base = IterationResult(iteration=0, asr=0.8, fpr=0.0)
    its = [IterationResult(iteration=1, asr=0.0, fpr=0.1)]
    sel = select_checkpoint(base, its, asr_target=0.1, capability_tolerance=0.05)
    assert sel.chosen == 1 and row(sel, 1).capability_ok is None and "not measured" in sel.reason
    its = [it(1, cap=None, se=None), it(2, fpr=(0.3, 0.3))]
    sel = select_checkpoint(BASE, its, asr_target=0.1, capability_tolerance=0.05)
    assert row(sel, 1).capability_ok is False and sel.chosen == 2


def test_inputs_are_validated():
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        IterationResult(iteration=1, asr=1.5, fpr=0)
    with pytest.raises(ValidationError, match="capability_se given without capability"):
        IterationResult(iteration=1, asr=0, fpr=0, capability_se=0.1)
    with pytest.raises(ValueError, match="unique"):
        select_checkpoint(BASE, [it(1), it(1)], asr_target=0.1, capability_tolerance=0.05)


def test_the_rule_has_no_field_for_held_out_figures():
    # Held out means held out: the rule's input cannot carry OOD or suite results.
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        IterationResult(iteration=1, asr=0.0, fpr=0.0, asr_ood=0.0)


# --- search ----------------------------------------------------------------------------------------------------------

SPACE = SearchSpace(lora_rank=[8, 16, 32], learning_rate=(5e-5, 5e-4), epochs=(1, 4), general_share=(0.1, 0.4))


def objective(hp: TrainHyperparams) -> float:
    # best near lr 2e-4, share 0.2, more epochs slightly better
    return -abs(math.log10(hp.learning_rate) - math.log10(2e-4)) - abs(hp.general_share - 0.2) + 0.05 * hp.epochs


def run_search(n: int, seed: int = 3) -> list[tuple[str, TrainHyperparams]]:
    history: list[Trial] = []
    out = []
    for _ in range(n):
        p = propose_next(SPACE, history, seed=seed)
        out.append((p.phase, p.hyperparams))
        history.append(Trial(hyperparams=p.hyperparams, score=objective(p.hyperparams)))
    return out


def test_successive_halving_then_refinement_is_deterministic_and_stays_in_the_space():
    a, b = run_search(14), run_search(14)
    assert a == b
    assert run_search(4, seed=4) != run_search(4, seed=3)
    phases = [ph for ph, _ in a]
    # 4 arms at 1 epoch, 2 at 2 epochs, 1 at 4 epochs, then local refinement
    assert phases[:7] == ["halving"] * 7 and set(phases[7:]) == {"refine"}
    assert [hp.epochs for _, hp in a[:7]] == [1, 1, 1, 1, 2, 2, 4]
    first_rung = [(hp.lora_rank, hp.learning_rate) for _, hp in a[:4]]
    second = [(hp.lora_rank, hp.learning_rate) for _, hp in a[4:6]]
    scores = {(hp.lora_rank, hp.learning_rate): objective(hp) for _, hp in a[:4]}
    assert set(second) == set(sorted(first_rung, key=lambda k: -scores[k])[:2])  # the better half goes on
    seen = set()
    for _, hp in a:
        assert hp.lora_rank in SPACE.lora_rank and hp.lora_alpha == 2 * hp.lora_rank
        assert 5e-5 <= hp.learning_rate <= 5e-4 and 1 <= hp.epochs <= 4 and 0.1 <= hp.general_share <= 0.4
        key = (hp.lora_rank, hp.learning_rate, hp.epochs, hp.general_share)
        assert key not in seen  # never proposes a trial twice
        seen.add(key)


def test_latin_hypercube_arms_cover_the_learning_rate_strata():
    arms = initial_arms(SPACE, seed=0, n=4)
    strata = sorted(int(4 * (math.log(lr) - math.log(5e-5)) / (math.log(5e-4) - math.log(5e-5))) for _, _, lr, _ in arms)
    assert strata == [0, 1, 2, 3]
    assert {r for r, *_ in arms} == {8, 16, 32}


def test_failed_trials_rank_last_and_foreign_trials_count_for_refinement():
    history = []
    for _ in range(7):
        p = propose_next(SPACE, history, seed=1)
        history.append(Trial(hyperparams=p.hyperparams, score=None))
    foreign = TrainHyperparams(lora_rank=16, lora_alpha=32, learning_rate=2e-4, epochs=3, general_share=0.2)
    history.append(Trial(hyperparams=foreign, score=10.0))
    p = propose_next(SPACE, history, seed=1)
    assert p.phase == "refine" and "score 10.0000" in p.note


def test_clamp_choice_pulls_a_proposal_into_the_space_and_lists_changes():
    base = TrainHyperparams(batch_size=4, max_steps=50)
    res = clamp_choice(
        {"lora_rank": 12, "lora_alpha": 7, "learning_rate": "0.01", "epochs": 2.6, "general_share": -1, "batch_size": 64, "foo": 1},
        SPACE,
        base=base,
    )
    hp = res.hyperparams
    assert (hp.lora_rank, hp.lora_alpha, hp.learning_rate, hp.epochs, hp.general_share) == (8, 16, 5e-4, 3, 0.1)
    assert hp.batch_size == 4 and hp.max_steps is None
    text = "\n".join(res.changes)
    for fragment in (
        "lora_rank 12 -> 8",
        "lora_alpha 7 -> 16",
        "learning_rate 0.01 -> 0.0005",
        "epochs 2.6 -> 3",
        "general_share -1.0 -> 0.1",
        "ignored batch_size=64",
        "unknown field 'foo'",
        "max_steps 50 dropped",
    ):
        assert fragment in text, fragment
    ok = clamp_choice({"lora_rank": 16, "learning_rate": 1e-4, "epochs": 2, "general_share": 0.3}, SPACE)
    assert ok.changes == [] and ok.hyperparams.lora_alpha == 32
    bad = clamp_choice({"lora_rank": "lots", "learning_rate": float("nan"), "epochs": True}, SPACE)
    assert bad.hyperparams.lora_rank == 16 and bad.hyperparams.learning_rate == 2e-4 and len(bad.changes) == 3


def test_alpha_list_space_and_space_validation():
    space = SearchSpace(lora_rank=[4, 8], lora_alpha=[8, 32], learning_rate=(1e-4, 1e-4), epochs=(2, 2), general_share=(0.0, 0.0))
    res = clamp_choice({"lora_rank": 8, "lora_alpha": 20}, space)
    assert res.hyperparams.lora_alpha == 8 and any("lora_alpha 20 -> 8" in c for c in res.changes)
    with pytest.raises(ValidationError):
        SearchSpace(learning_rate=(1e-3, 1e-4))
    with pytest.raises(ValidationError):
        SearchSpace(epochs=(0, 2))
    with pytest.raises(ValidationError):
        SearchSpace(unknown=1)
