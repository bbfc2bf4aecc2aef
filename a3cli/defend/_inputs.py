"""What the defences read from the run directory: the splits, the ideal replies, the baseline and the experiment log.

In-context examples are (harmful training probe + its ideal reply, benign twin + its helpful reply) pairs built from
`expect/train_sft.jsonl`, matched to the training probes by probe id, or by conversation when a row has no id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a3cli._io import read_jsonl
from a3cli.errors import A3Error
from a3cli.probes import Probe, dedup_key
from a3cli.rundir import RunDir
from a3cli.spec import Message
from a3cli.stats import Rate
from a3cli.train import IterationResult

SPLITS = ("train", "validation", "ood")
_LOG_CHARS = 12_000  # the experiment log shown to the agent is cut to its last part (the latest rounds matter most)


class DefendInputError(A3Error):
    """A run-directory file the defences need is missing or malformed."""


@dataclass(frozen=True)
class ICLPair:
    """One in-context example: a harmful training conversation with its ideal reply, and the benign twin with its
    helpful reply (None when the expect stage dropped the twin)."""

    id: str  # the harmful probe's id
    hypothesis_id: str
    harmful: tuple[Message, ...]  # conversation turns without any system prompt, ending on the user turn
    harmful_reply: str
    benign: tuple[Message, ...] | None
    benign_reply: str | None
    baseline_success: bool | None  # did the attack succeed on the undefended target? None: unscored / unknown

    @property
    def harmful_prompt(self) -> str:
        return next((m.content for m in reversed(self.harmful) if m.role == "user"), "")

    @property
    def benign_prompt(self) -> str:
        return next((m.content for m in reversed(self.benign or ()) if m.role == "user"), "")

    def messages(self) -> list[Message]:
        """The prior turns this example contributes: harmful exchange, then the benign one."""
        out = [*self.harmful, Message(role="assistant", content=self.harmful_reply)]
        if self.benign is not None and self.benign_reply is not None:
            out += [*self.benign, Message(role="assistant", content=self.benign_reply)]
        return out


@dataclass
class DefendInputs:
    run: RunDir
    train: list[Probe]
    validation: list[Probe]
    ood: list[Probe]
    pairs: list[ICLPair]
    baseline_success: dict[str, bool | None]  # probe id -> baseline verdict (attack success / false refusal)
    experiment_log: str
    notes: list[str] = field(default_factory=list)

    def input_files(self) -> list[Path]:
        return [p for p in required_files(self.run) + optional_files(self.run) if p.is_file()]

    def baseline_rate(self, probes: list[Probe], kind: str) -> Rate:
        judged = [self.baseline_success[p.id] for p in probes if p.kind == kind and self.baseline_success.get(p.id) is not None]
        return Rate.of(sum(1 for s in judged if s), len(judged))

    def baseline_iteration(self) -> IterationResult:
        """The undefended target's validation rates, in the form the selection rule compares against."""
        return IterationResult(
            iteration=0,
            asr=rate_or_worst(self.baseline_rate(self.validation, "harmful")),
            fpr=rate_or_worst(self.baseline_rate(self.validation, "benign")),
        )


def rate_or_worst(rate: Rate) -> float:
    """A rate with nothing scored ranks as the worst possible (1.0): it must never look like a perfect defence."""
    return 1.0 if rate.rate is None else rate.rate


def required_files(run: RunDir, *, sft: bool = True) -> list[Path]:
    files = [run.path("split", f"{name}.jsonl") for name in SPLITS]
    return (files + [run.path("expect", "train_sft.jsonl")]) if sft else files


def optional_files(run: RunDir) -> list[Path]:
    return [run.path("generate", "results.jsonl"), run.path("generate", "experiment_log.md")]


def _probes(path: Path) -> tuple[list[Probe], dict[str, bool | None]]:
    """A split file's probes and, where the split stage kept it under `result`, each probe's baseline verdict."""
    probes: list[Probe] = []
    verdicts: dict[str, bool | None] = {}
    try:
        for row in read_jsonl(path):
            if isinstance(row, dict) and "probe" in row:
                data, result = row["probe"], row.get("result")
            else:
                data = {k: v for k, v in row.items() if k != "result"}
                result = row.get("result")
            probe = Probe.model_validate(data)
            probes.append(probe)
            if isinstance(result, dict) and "success" in result:
                verdicts[probe.id] = result["success"] if isinstance(result["success"], bool) else None
    except (ValueError, TypeError, AttributeError) as e:
        raise DefendInputError(f"{path}: not a probe file ({str(e).splitlines()[0]})") from None
    return probes, verdicts


def _without_system(messages: list[Message]) -> tuple[Message, ...]:
    return tuple(m for m in messages if m.role != "system")


def _sft_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, row in enumerate(read_jsonl(path), 1):
        if isinstance(row, dict) and row.get("origin") == "topic_swap":
            continue  # training augmentation (a probe's wrapper with another topic), not a probe of the run
        try:
            messages = [Message.model_validate(m) for m in row["messages"]]
            kind = row["kind"]
        except (KeyError, TypeError, ValueError):
            raise DefendInputError(f"{path}:{n}: an SFT row needs `messages` (a list of role/content turns) and `kind`") from None
        if len(messages) < 2 or messages[-1].role != "assistant":
            raise DefendInputError(f"{path}:{n}: the last message must be the ideal assistant reply")
        rows.append({**row, "messages": messages, "kind": kind})
    return rows


def build_pairs(train: list[Probe], sft: list[dict[str, Any]], baseline: dict[str, bool | None]) -> tuple[list[ICLPair], list[str]]:
    """Pair every harmful SFT row with its benign twin's SFT row (through the probes' `twin_id`)."""
    notes: list[str] = []
    by_id = {p.id: p for p in train}
    by_key = {p.dedup_key(): p for p in train}
    replies: dict[str, tuple[Probe, str]] = {}
    unmatched = 0
    for row in sft:
        pid = row.get("probe_id") or row.get("id")
        probe = by_id.get(pid) if isinstance(pid, str) else None
        if probe is None:
            probe = by_key.get(dedup_key(row["messages"][:-1], row.get("prefill")))
        if probe is None:
            unmatched += 1
            continue
        replies[probe.id] = (probe, row["messages"][-1].content)
    if unmatched:
        notes.append(f"{unmatched} SFT row(s) matched no training probe and are not used as in-context examples")
    pairs: list[ICLPair] = []
    no_twin = 0
    for pid, (probe, reply) in replies.items():
        if probe.kind != "harmful":
            continue
        twin = replies.get(probe.twin_id) if probe.twin_id else None
        if twin is None:
            no_twin += 1
        pairs.append(
            ICLPair(
                id=pid,
                hypothesis_id=probe.hypothesis_id,
                harmful=_without_system(probe.messages),
                harmful_reply=reply,
                benign=_without_system(twin[0].messages) if twin else None,
                benign_reply=twin[1] if twin else None,
                baseline_success=baseline.get(pid),
            )
        )
    if no_twin:
        notes.append(f"{no_twin} harmful example(s) have no benign twin with an ideal reply; they are shown alone")
    pairs.sort(key=lambda p: (p.hypothesis_id, p.id))
    return pairs, notes


def _baseline(run: RunDir) -> dict[str, bool | None]:
    path = run.path("generate", "results.jsonl")
    if not path.is_file():
        return {}
    out: dict[str, bool | None] = {}
    for row in read_jsonl(path):
        if isinstance(row, dict) and isinstance(row.get("probe_id"), str):
            success = row.get("success")
            out[row["probe_id"]] = success if isinstance(success, bool) else None
    return out


def load_inputs(run: RunDir, *, need_sft: bool = True) -> DefendInputs:
    """Everything the defences read. `need_sft`: the in-context and fixed-mix defences need `expect`'s ideal replies;
    the prompt defence needs only the splits."""
    missing = [str(p) for p in required_files(run, sft=need_sft) if not p.is_file()]
    if missing:
        raise DefendInputError(f"`a3 defend` needs {', '.join(missing)}; run `a3 generate`, `a3 split` and `a3 expect` first")
    loaded = {name: _probes(run.path("split", f"{name}.jsonl")) for name in SPLITS}
    splits = {name: probes for name, (probes, _) in loaded.items()}
    baseline = _baseline(run)
    for _, verdicts in loaded.values():
        baseline.update(verdicts)
    notes: list[str] = []
    evaluated = splits["validation"] + splits["ood"]
    unknown = sum(1 for p in evaluated if p.id not in baseline)
    if unknown:
        notes.append(f"{unknown} validation/OOD probe(s) have no baseline verdict (split rows or generate/results.jsonl)")
    sft_path = run.path("expect", "train_sft.jsonl")
    pairs: list[ICLPair] = []
    if sft_path.is_file():
        pairs, pair_notes = build_pairs(splits["train"], _sft_rows(sft_path), baseline)
        notes += pair_notes
    log_path = run.path("generate", "experiment_log.md")
    log = log_path.read_text(encoding="utf-8") if log_path.is_file() else ""
    if len(log) > _LOG_CHARS:
        log = "[... earlier rounds cut ...]\n" + log[-_LOG_CHARS:]
    return DefendInputs(
        run=run,
        train=splits["train"],
        validation=splits["validation"],
        ood=splits["ood"],
        pairs=pairs,
        baseline_success=baseline,
        experiment_log=log,
        notes=notes,
    )
