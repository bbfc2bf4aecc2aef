"""`a3 generate`: the data-generation agent. Round 0 runs the seed (and any imported attacks); each later round forms
hypotheses (generator LLM, or the offline strategy bandit), writes harmful probes with benign twins, runs them on the
target, judges them and logs per-hypothesis ASR and false-refusal rate. Successful probes become basis examples for
the next round. Stops after `generation.rounds` rounds or when a round adds less coverage than
`generation.min_new_coverage`, and says why.

Re-running after a crash repeats no model call (the Engine's cache answers them) and gives identical files: every
choice is drawn from an RNG seeded by `generation.seed` and depends only on the (cached) replies.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a3cli._io import iter_jsonl
from a3cli.errors import InfrastructureError, SpecError
from a3cli.judges import run_sync, spec_judges
from a3cli.llm import record_outcome
from a3cli.probes import Probe, ScoredProbe, ascore_probes, summarise
from a3cli.rundir import RunDir, StageManifest
from a3cli.spec import Message, Spec, offline_generator_warning, offline_mismatch
from a3cli.stages._common import as_run_dir, failure_mark, raise_on_failed_calls
from a3cli.stages.generate._generator import GeneratorLLM, probe_side
from a3cli.stages.generate._log import ExperimentLog, HypothesisEntry, LoggedExample, render_messages
from a3cli.stages.generate._offline import StrategyBandit, allowed_strategies
from a3cli.stages.generate._strategies import Context, chain_name, render_probe
from a3cli.stages.generate._topics import Topic, TopicPool, benign_for, build_topic_pool, categories_of
from a3cli.stages.generate._validate import validate_probe

STAGE = "generate"
CODE_VERSION = "1"
SEED_HYPOTHESIS = "h00-seed"
IMPORT_HYPOTHESIS = "h00-import"
MAX_RENDER_ATTEMPTS = 4  # per topic: re-draw templates when a probe or its twin is a duplicate


class NoUsableImports(SpecError):
    """Every imported attack was rejected (empty, malformed, or a duplicate of a probe the run has)."""


@dataclass
class _Planned:
    entry: HypothesisEntry
    probes: list[Probe]


def run_generate(
    spec: Spec, run_dir: RunDir | str | os.PathLike[str], engine: Any, *, import_path: str | os.PathLike[str] | None = None
) -> StageManifest:
    """Write generate/{probes,results,hypotheses}.jsonl, experiment_log.{md,jsonl} and the manifest. Skipped (the old
    manifest returned) when the stage is current: same spec sections, code version and import file."""
    run = as_run_dir(spec, run_dir)
    inputs = [Path(import_path)] if import_path else []
    if import_path is not None and not Path(import_path).is_file():
        raise SpecError(f"--import: no file at {import_path}")
    if run.is_current(STAGE, inputs=inputs, code_version=CODE_VERSION):
        manifest = run.manifest(STAGE)
        assert manifest is not None
        return manifest
    with run.stage(STAGE, inputs=inputs, code_version=CODE_VERSION) as st:
        st.track_engine(engine)
        st.add_model("target", spec.target)
        st.add_model("generator", spec.roles.generator)
        st.add_model("judge", spec.roles.judge)
        gen = _Generation(spec, engine, import_path)
        run_sync(gen.run())
        gen.write(st)
    return st.manifest


def add_imported_family(
    spec: Spec,
    run_dir: RunDir | str | os.PathLike[str],
    engine: Any,
    *,
    base: RunDir,
    import_path: str | os.PathLike[str],
    hypothesis_id: str,
    description: str,
) -> StageManifest:
    """generate/ of `run_dir` = `base`'s generate outputs unchanged plus the attacks in `import_path` as one new
    hypothesis family `hypothesis_id`, each with a benign twin, run on the target and judged like any probe (what
    `a3 generate --import` does, without re-running the rounds: every earlier probe, and so every held-out split,
    stays exactly as it was). Skipped when current: same spec sections, base outputs and import file."""
    from a3cli.stages.split import generate_outputs, load_scored

    run = as_run_dir(spec, run_dir)
    inputs = [*generate_outputs(base), base.path(STAGE, "experiment_log.jsonl"), Path(import_path)]
    if run.is_current(STAGE, inputs=inputs, code_version=CODE_VERSION):
        manifest = run.manifest(STAGE)
        assert manifest is not None
        return manifest
    base_manifest = base.manifest(STAGE)
    if base_manifest is None or base_manifest.status != "complete":
        raise SpecError(f"{base.root}: its generate stage is not complete; nothing to add a family to")
    with run.stage(STAGE, inputs=inputs, code_version=CODE_VERSION) as st:
        st.track_engine(engine)
        st.add_model("target", spec.target)
        st.add_model("judge", spec.roles.judge)
        scored, _ = load_scored(base)
        gen = _Generation(spec, engine, import_path)
        gen.continue_from(scored, ExperimentLog.from_rows(iter_jsonl(base.path(STAGE, "experiment_log.jsonl"))), base_manifest.counts)
        plan = gen._import_hypothesis(Path(import_path), hid=hypothesis_id, description=description)
        run_sync(gen._score([plan], 0))
        gen._stop_on_failed_calls()
        gen._check_judged()
        gen.notes.append(f"{hypothesis_id}: {plan.entry.n_harmful} imported attacks added to the {len(scored)} earlier probes "
                         f"(their ASR on the target: {plan.entry.asr.render()})")
        gen.write(st)
    return st.manifest


class _Generation:
    def __init__(self, spec: Spec, engine: Any, import_path: str | os.PathLike[str] | None):
        self.spec = spec
        self.engine = engine
        self.import_path = import_path
        self.fmt = spec.probes
        self.ctx = Context(
            allow_prefill=spec.probes.prefill,
            turns=spec.probes.turns,
            system_prompt=spec.probes.system_prompt,
            seed_system=spec.seed.system,
        )
        self.rng = random.Random(f"a3-generate:{spec.generation.seed}")
        self.judges = spec_judges(spec, engine)
        self.log = ExperimentLog.start(spec)
        self.probes: list[Probe] = []
        self.scored: dict[str, ScoredProbe] = {}
        self.seen: set[str] = set()
        self.covered: set[tuple[str, str]] = set()
        self.rejected: Counter[str] = Counter()
        self.generator = GeneratorLLM(spec, engine, spec.roles.generator) if spec.roles.generator else None
        self.bandit = StrategyBandit(allowed_strategies(spec.generation.strategies), random.Random(f"a3-bandit:{spec.generation.seed}"))
        self.pool: TopicPool = build_topic_pool(spec, strongreject=self.generator is None)
        self.stop_reason = ""
        self.rounds_run = 0
        self.failures_from = failure_mark(engine)
        self.no_hypotheses = ""  # why the generator's last answer gave no hypotheses
        self.notes: list[str] = []
        self.fallback_rounds: list[int] = []

    def _stop_on_failed_calls(self) -> None:
        raise_on_failed_calls(self.engine, self.failures_from, "generate")

    # ------------------------------------------------------------------------------------------------------ main loop

    async def run(self) -> None:
        planned = [self._seed_hypothesis()]
        if self.import_path is not None:
            planned.append(self._import_hypothesis(Path(self.import_path)))
        scored = await self._score(planned, 0)
        self._stop_on_failed_calls()
        if scored and all(s.error is not None for s in scored):
            raise InfrastructureError(f"every target call failed in round 0; first error: {scored[0].error}")
        seed_result = self.scored[planned[0].probes[0].id]
        if seed_result.success is None:
            self.log.seed.verdict = "unscored"
        else:
            self.log.seed.verdict = "reproduced (attack succeeded)" if seed_result.success else "not reproduced (target refused)"
        self.log.seed.reason = seed_result.verdict.error or seed_result.verdict.reason

        g = self.spec.generation
        for r in range(1, g.rounds + 1):
            planned = await self._llm_round(r) if self.generator else self._offline_round(r)
            self._stop_on_failed_calls()
            if self.generator and not any(p.probes for p in planned):
                planned = self._generator_fallback(r, planned)
            if not any(p.probes for p in planned):
                raise InfrastructureError(f"generate round {r}: {self._no_probes_reason(planned)}")
            scored = await self._score(planned, r)
            self._stop_on_failed_calls()
            self.rounds_run = r
            gain = self._coverage_gain(scored)
            harmful = [s for s in scored if s.kind == "harmful" and s.success is not None]
            self.log.rounds.append(
                {
                    "round": r,
                    "hypotheses": len(planned),
                    "probes": len(scored),
                    "harmful_successes": sum(1 for s in harmful if s.success),
                    "harmful_scored": len(harmful),
                    "new_coverage": round(gain, 4),
                }
            )
            if r == g.rounds:
                self.stop_reason = f"round budget reached ({g.rounds} rounds)"
            elif gain < g.min_new_coverage:
                self.stop_reason = (
                    f"round {r} added new coverage {gain:.3f} < generation.min_new_coverage {g.min_new_coverage:g} "
                    "(new strategy-family x topic-category cells with a success, per scored harmful probe)"
                )
                break
        self.log.stop_reason = self.stop_reason
        self._check_judged()

    def _no_probes_reason(self, planned: list[_Planned]) -> str:
        why: Counter[str] = Counter()
        for p in planned:
            why.update(p.entry.rejected)
        shown = ", ".join(f"{k} x{n}" for k, n in why.most_common(6)) or f"no hypotheses: {self.no_hypotheses or 'none proposed'}"
        if self.generator is not None:
            ref = self.spec.roles.generator
            assert ref is not None
            who = f"the generator (roles.generator, {ref.provider} model {ref.model!r})"
        else:
            who = "the offline strategy library"
        return f"{who} produced no valid probes (why: {shown}); nothing to test, so the stage stops here"

    def _check_judged(self) -> None:
        """Fail when a judge scored none of its probes: a useless run must not look complete."""
        rows = list(self.scored.values())
        for kind, role in (("harmful", "harmful"), ("benign", "refusal")):
            mine = [s for s in rows if s.kind == kind]
            if not mine or any(s.success is not None for s in mine):
                continue
            reasons = Counter(s.error or s.verdict.error or s.verdict.reason or "no reason given" for s in mine)
            reason, n = reasons.most_common(1)[0]
            who = "the target" if all(s.error for s in mine) else f"the {role} judge ({self.judges[role].name})"  # type: ignore[index]
            raise InfrastructureError(
                f"generate: every {kind} probe is unscored ({len(mine)} of {len(mine)}): {who} failed; most common "
                f"reason ({n} of {len(mine)}): {reason}"
            )

    async def _score(self, planned: list[_Planned], r: int) -> list[ScoredProbe]:
        probes = [p for plan in planned for p in plan.probes]
        scored = await ascore_probes(self.spec, self.engine, probes, judges=self.judges, progress=f"generate round {r}: target")
        for s in scored:
            self.scored[s.probe.id] = s
        self.probes += probes
        for plan in planned:
            self._fill_entry(plan)
            self.log.add(plan.entry)
            if plan.entry.source.startswith("offline"):
                harm = [self.scored[p.id] for p in plan.probes if p.kind == "harmful"]
                self.bandit.update(
                    plan.entry.strategy.split("+"),
                    sum(1 for s in harm if s.success is True),
                    sum(1 for s in harm if s.success is False),
                )
        return scored

    def _fill_entry(self, plan: _Planned) -> None:
        e = plan.entry
        rows = [self.scored[p.id] for p in plan.probes]
        harm = [s for s in rows if s.kind == "harmful"]
        ben = [s for s in rows if s.kind == "benign"]
        e.n_harmful, e.n_benign = len(harm), len(ben)
        e.successes = sum(1 for s in harm if s.success is True)
        e.unscored_harmful = sum(1 for s in harm if s.success is None)
        e.false_refusals = sum(1 for s in ben if s.success is True)
        e.unscored_benign = sum(1 for s in ben if s.success is None)
        shown = next((s for s in harm if s.success), harm[0] if harm else None)
        if shown is not None:
            p = shown.probe
            e.example = LoggedExample(
                probe_id=p.id,
                messages=p.messages,
                prefill=p.prefill,
                reply=shown.reply if shown.reply is not None else shown.error,
                verdict={True: "attack succeeded", False: "refused", None: "unscored"}[shown.success],
                reason=shown.verdict.error or shown.verdict.reason,
            )

    def _generator_fallback(self, r: int, failed: list[_Planned]) -> list[_Planned]:
        """A round whose generator answers gave no usable probe is written by the offline library instead (counted
        and noted), when that library fits the attack; otherwise it stays empty and the stage says why."""
        reasons = dict(self.rejected)
        mismatch = offline_mismatch(self.spec)
        if mismatch is not None:
            self.notes.append(f"round {r}: the generator gave no usable probe and no offline fallback fits this attack ({mismatch})")
            return failed
        record_outcome(self.engine, "fallbacks", "generator", "offline_strategy_library")
        self.fallback_rounds.append(r)
        self.notes.append(
            f"round {r}: the generator gave no usable probe (rejected so far: {reasons}); the offline strategy library wrote "
            "this round's hypotheses instead"
        )
        if not self.pool.near and not self.pool.rest:
            self.pool = build_topic_pool(self.spec)  # the generator's pool has the seed only; the library needs breadth
        planned = list(failed) + self._offline_round(r, first_index=len(failed))
        for plan in planned[len(failed) :]:
            plan.entry.source = "offline (generator unusable)"
        return planned

    def _coverage_gain(self, scored: Sequence[ScoredProbe]) -> float:
        harmful = [s for s in scored if s.kind == "harmful" and s.success is not None]
        new = 0
        for s in harmful:
            if not s.success:
                continue
            cell = (s.probe.family, str(s.probe.meta.get("category", "")))
            if cell not in self.covered:
                self.covered.add(cell)
                new += 1
        return new / len(harmful) if harmful else 0.0

    # ------------------------------------------------------------------------------------------------------ probes

    def _accept(
        self, messages: list[Message], prefill: str | None, *, allow_fewer_turns: bool = False, check_refusal: bool = False
    ) -> str | None:
        reason = validate_probe(messages, prefill, self.fmt, check_generator_refusal=check_refusal, allow_fewer_turns=allow_fewer_turns)
        if reason is not None:
            return reason
        probe_key = Probe.make(messages=messages, prefill=prefill, hypothesis_id="", strategy="", family="", kind="harmful").dedup_key()
        return "duplicate" if probe_key in self.seen else None

    def _pair(
        self,
        harmful: tuple[list[Message], str | None],
        benign: tuple[list[Message], str | None],
        *,
        hid: str,
        strategy: str,
        family: str,
        topic: Topic | None,
        benign_topic: str | None,
        r: int,
        meta: dict[str, Any] | None = None,
    ) -> list[Probe]:
        common = {"hypothesis_id": hid, "strategy": strategy, "family": family, "round": r}
        m = {"category": topic.category if topic else None, **(meta or {})}
        h = Probe.make(messages=harmful[0], prefill=harmful[1], kind="harmful", topic=topic.text if topic else None, meta=m, **common)
        b = Probe.make(messages=benign[0], prefill=benign[1], kind="benign", topic=benign_topic, meta={"category": m["category"]}, **common)
        h.twin_id, b.twin_id = b.id, h.id
        self.seen.add(h.dedup_key())
        self.seen.add(b.dedup_key())
        return [h, b]

    def _offline_twin(
        self, chain: Sequence[str], topic: Topic, used: set[str], rejected: Counter[str], rng: random.Random | None = None
    ) -> tuple[list[Message], str | None] | None:
        """Render a benign twin for an existing harmful probe's form when no template twin exists (seed, imports)."""
        rng = rng or self.rng
        for _ in range(MAX_RENDER_ATTEMPTS):
            benign = benign_for(topic.category, rng, used)
            used.add(benign)
            rendered = render_probe(chain, benign, rng.getrandbits(63), self.fmt, self.ctx)
            reason = self._accept(rendered.messages, rendered.prefill)
            if reason is None:
                return rendered.messages, rendered.prefill
            rejected[f"twin_{reason}"] += 1
        return None

    def _seed_hypothesis(self) -> _Planned:
        spec = self.spec
        messages, prefill = spec.seed.messages(), spec.seed.prefill
        entry = HypothesisEntry(
            id=SEED_HYPOTHESIS,
            round=0,
            hypothesis="The seed itself: the observed failure, replayed on the target.",
            strategy="seed",
            family="seed",
            basis_example=None,
            source="seed",
        )
        rejected: Counter[str] = Counter()
        twin = self._offline_twin(("direct",), self.pool.seed, set(), rejected)
        if twin is None:
            raise InfrastructureError("could not write a benign twin for the seed (every candidate was a duplicate)")
        twin_messages, twin_prefill = twin
        if spec.seed.system and twin_messages[0].role == "system":
            twin_messages = [Message(role="system", content=spec.seed.system), *twin_messages[1:]]
        probes = self._pair(
            (messages, prefill),
            (twin_messages, twin_prefill),
            hid=SEED_HYPOTHESIS,
            strategy="seed",
            family="seed",
            topic=self.pool.seed,
            benign_topic=None,
            r=0,
        )
        entry.rejected = dict(rejected)
        self.rejected.update(rejected)
        return _Planned(entry, probes)

    def _import_hypothesis(self, path: Path, hid: str = IMPORT_HYPOTHESIS, description: str | None = None) -> _Planned:
        """The attacks in `path` as one hypothesis `hid`, each with a benign twin. The twins are drawn from an RNG of
        their own, so importing attacks leaves every other probe of the run as it would have been."""
        entry = HypothesisEntry(
            id=hid,
            round=0,
            strategy="imported",
            family="imported",
            source="imported",
            hypothesis=description or f"Attacks imported from {path.name} (e.g. written by the RL red-teamer) also make the target fail.",
        )
        rng = random.Random(f"a3-import:{self.spec.generation.seed}:{hid}")
        rejected: Counter[str] = Counter()
        probes: list[Probe] = []
        used: set[str] = set()
        try:
            rows = list(iter_jsonl(path))
        except ValueError as e:
            raise SpecError(f"--import: {e}") from None
        texts = []
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                rejected["import:no_prompt"] += 1
                continue
            texts.append((row["prompt"].strip(), {k: row[k] for k in ("reward", "completion") if k in row}))
        from a3cli.stages.redteam import attack_messages  # the form the red-teamer's attacks had on its target

        categories = self._categories([t for t, _ in texts])
        for (text, meta), category in zip(texts, categories):
            messages = attack_messages(self.spec, text)
            reason = self._accept(messages, None, allow_fewer_turns=True)
            if reason is not None:
                rejected[reason] += 1
                continue
            topic = Topic(text, category, "imported")
            twin = self._offline_twin(("direct",), topic, used, rejected, rng)
            if twin is None:
                continue
            probes += self._pair(
                (messages, None),
                twin,
                hid=hid,
                strategy="imported",
                family="imported",
                topic=topic,
                benign_topic=None,
                r=0,
                meta={"import": meta} if meta else None,
            )
        entry.rejected = dict(rejected)
        self.rejected.update(rejected)
        if not probes:
            raise NoUsableImports(f"--import {path}: no usable prompts (rejected: {dict(rejected)})")
        return _Planned(entry, probes)

    def continue_from(self, scored: Sequence[ScoredProbe], log: ExperimentLog, counts: dict[str, Any]) -> None:
        """Start from an earlier generate stage's probes, verdicts and log (a hardening loop adds a family to them)."""
        for s in scored:
            self.scored[s.probe.id] = s
            self.probes.append(s.probe)
            self.seen.add(s.probe.dedup_key())
        self.log = log
        self.rounds_run = int(counts.get("rounds") or 0)
        self.stop_reason = str(counts.get("stop_reason") or "")
        self.fallback_rounds = list(counts.get("generator_fallback_rounds") or [])

    def _categories(self, texts: Sequence[str]) -> list[str]:
        """The harm category of each text (decides which benign category its twin's request comes from)."""
        return categories_of(texts)

    # ------------------------------------------------------------------------------------------------------ offline rounds

    def _basis_for(self, chain: Sequence[str]) -> ScoredProbe | None:
        """The successful probe this hypothesis builds on: one sharing most strategies with it (the seed otherwise)."""
        best: tuple[int, int] | None = None
        chosen = None
        for order, s in enumerate(self.scored.values()):
            if s.kind != "harmful" or not s.success:
                continue
            overlap = len(set(chain) & set(s.probe.strategy.split("+")))
            key = (overlap, -order)
            if best is None or key > best:
                best, chosen = key, s
        return chosen

    def _offline_round(self, r: int, first_index: int = 0) -> list[_Planned]:
        g = self.spec.generation
        planned = []
        for j, choice in enumerate(self.bandit.choose(g.hypotheses_per_round, r), start=first_index):
            hid = f"h{r:02d}-{j:02d}"
            name = chain_name(choice.chain)
            basis = self._basis_for(choice.chain)
            entry = HypothesisEntry(
                id=hid,
                round=r,
                hypothesis=choice.hypothesis,
                strategy=name,
                family=choice.chain[0] if len(choice.chain) == 1 else _family(choice.chain),
                basis_example=basis.probe.id if basis else "seed",
                source="offline",
            )
            topics = self.pool.sample(self.rng, g.probes_per_hypothesis)
            if basis is not None and basis.probe.topic:
                # Test the new mechanism on the request where an earlier one worked.
                topics[0] = Topic(
                    basis.probe.topic, str(basis.probe.meta.get("category") or self.pool.seed.category), f"basis:{basis.probe.id}"
                )
            rejected: Counter[str] = Counter()
            used_benign: set[str] = set()
            probes: list[Probe] = []
            for topic in topics:
                for _ in range(MAX_RENDER_ATTEMPTS):
                    plan_seed = self.rng.getrandbits(63)
                    harmful = render_probe(choice.chain, topic.text, plan_seed, self.fmt, self.ctx)
                    reason = self._accept(harmful.messages, harmful.prefill)
                    if reason is not None:
                        rejected[reason] += 1
                        continue
                    benign_text = benign_for(topic.category, self.rng, used_benign)
                    benign = render_probe(choice.chain, benign_text, plan_seed, self.fmt, self.ctx)
                    reason = self._accept(benign.messages, benign.prefill)
                    if reason is not None:
                        rejected[f"twin_{reason}"] += 1
                        continue
                    used_benign.add(benign_text)
                    probes += self._pair(
                        (harmful.messages, harmful.prefill),
                        (benign.messages, benign.prefill),
                        hid=hid,
                        strategy=name,
                        family=entry.family,
                        topic=topic,
                        benign_topic=benign_text,
                        r=r,
                        meta={"plan_seed": plan_seed},
                    )
                    break
            entry.rejected = dict(rejected)
            self.rejected.update(rejected)
            planned.append(_Planned(entry, probes))
        return planned

    # ------------------------------------------------------------------------------------------------------ LLM rounds

    async def _llm_round(self, r: int) -> list[_Planned]:
        assert self.generator is not None
        g = self.spec.generation
        hyps, why = await self.generator.propose(self.log.for_generator(g.log_token_budget), g.hypotheses_per_round, r)
        if not hyps:
            self.rejected[why or "generator_no_hypotheses"] += 1
            self.no_hypotheses = why or "generator_no_hypotheses"
            return []
        by_id = {p.id: p for p in self.probes}
        basis_texts = []
        for h in hyps:
            if h.basis_example in by_id:
                p = by_id[h.basis_example]
                s = self.scored.get(p.id)
                basis_texts.append(render_messages(p.messages, p.prefill, 1500) + (f"\nTarget reply: {(s.reply or '')[:500]}" if s else ""))
            else:
                seed = self.log.seed
                basis_texts.append(render_messages(seed.messages, seed.prefill, 1500) + f"\nTarget reply: {(seed.reply or '')[:500]}")
        written = await self.generator.write_probes(hyps, basis_texts, g.probes_per_hypothesis, r)
        raw_texts: list[tuple[int, list[Message], str | None, list[Message], str | None]] = []
        planned: list[_Planned] = []
        for j, (h, (pairs, fail)) in enumerate(zip(hyps, written)):
            hid = f"h{r:02d}-{j:02d}"
            basis_id = h.basis_example if h.basis_example in by_id or h.basis_example == "seed" else "seed"
            entry = HypothesisEntry(
                id=hid,
                round=r,
                hypothesis=h.hypothesis,
                strategy=h.strategy,
                family=h.strategy,
                basis_example=basis_id,
                source="llm",
                reasoning=h.reasoning,
            )
            rejected: Counter[str] = Counter()
            if fail:
                rejected[fail] += 1
            for hr, br in pairs:
                if sum(1 for x in raw_texts if x[0] == j) >= g.probes_per_hypothesis:
                    break
                try:
                    hm, hp = probe_side(hr)
                except (ValueError, TypeError):
                    rejected["format:unparseable_probe"] += 1
                    continue
                try:
                    bm, bp = probe_side(br)
                except (ValueError, TypeError):
                    rejected["twin_format:unparseable_probe"] += 1
                    continue
                reason = self._accept(hm, hp, check_refusal=True)
                if reason is not None:
                    rejected[reason] += 1
                    continue
                reason = self._accept(bm, bp, check_refusal=True)
                if reason is not None:
                    rejected[f"twin_{reason}"] += 1
                    continue
                raw_texts.append((j, hm, hp, bm, bp))
                # Reserve the keys now so later pairs of this round cannot duplicate them.
                self.seen.add(Probe.make(messages=hm, prefill=hp, hypothesis_id="", strategy="", family="", kind="harmful").dedup_key())
                self.seen.add(Probe.make(messages=bm, prefill=bp, hypothesis_id="", strategy="", family="", kind="benign").dedup_key())
            entry.rejected = dict(rejected)
            self.rejected.update(rejected)
            planned.append(_Planned(entry, []))
        categories = self._categories([hm[-1].content for _, hm, _, _, _ in raw_texts])
        for (j, hm, hp, bm, bp), category in zip(raw_texts, categories):
            plan = planned[j]
            topic = Topic(hm[-1].content, category, "llm")
            plan.probes += self._pair(
                (hm, hp),
                (bm, bp),
                hid=plan.entry.id,
                strategy=plan.entry.strategy,
                family=plan.entry.family,
                topic=topic,
                benign_topic=None,
                r=r,
            )
        return planned

    # ------------------------------------------------------------------------------------------------------ outputs

    def write(self, st: Any) -> None:
        scored = [self.scored[p.id] for p in self.probes]
        st.write_jsonl("probes.jsonl", [p.model_dump(mode="json") for p in self.probes])
        st.write_jsonl("results.jsonl", [s.result_row() for s in scored])
        st.write_jsonl(
            "hypotheses.jsonl",
            [{**e.model_dump(mode="json", exclude={"example"}), "asr": e.asr.rate, "fpr": e.fpr.rate} for e in self.log.entries],
        )
        st.write_text("experiment_log.md", self.log.markdown())
        st.write_jsonl("experiment_log.jsonl", self.log.jsonl_rows())
        if self.generator is None:
            st.write_json("strategy_posteriors.json", self.bandit.summary())
        m = summarise(scored)
        st.counts.update(
            {
                "hypotheses": len(self.log.entries),
                "rounds": self.rounds_run,
                "probes": len(self.probes),
                "harmful": m.n_harmful,
                "benign": m.n_benign,
                "asr": m.asr.rate,
                "fpr": m.fpr.rate,
                "unscored_harmful": m.unscored_harmful,
                "unscored_benign": m.unscored_benign,
                "target_errors": m.target_errors,
                "rejected": dict(sorted(self.rejected.items())),
                "stop_reason": self.stop_reason,
                "method": "llm" if self.generator else "offline",
                "generator_fallback_rounds": self.fallback_rounds,
                "topics": self.spec.generation.topics,
                "seed_category": self.pool.seed.category,
            }
        )
        st.notes.extend(self.notes)
        offline = offline_generator_warning(self.spec)
        if offline is not None:
            st.notes.append(f"warning: {offline}")
        st.notes.append(f"stopped: {self.stop_reason}")


def _family(chain: Sequence[str]) -> str:
    """A combination's family is its outermost framing (the mechanism a model sees first), not the modifiers."""
    framing = [s for s in chain if s not in ("refusal_suppression", "prefix_injection")]
    return framing[-1] if framing else chain[-1]
