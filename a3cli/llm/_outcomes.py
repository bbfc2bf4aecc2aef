"""What became of each role's answers: re-asks, fallbacks and answers that stayed unusable, counted by reason.

A role's failure must be visible, never a silent success: an answer a3 cannot use is asked again (a re-ask, which
says why); one still unusable after the re-asks is counted as unusable (an unscored verdict is one); and what a stage
does instead is counted as a fallback (the offline library, a default reply or a dropped row, the built-in search,
values clamped into range). An unusable answer and the fallback that replaces it are both counted, each once. The
Engine carries one meter; each stage records the difference over its run in its manifest, prints it in one line, and
the report shows it.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OutcomeKind = Literal["reasks", "fallbacks", "unusable"]
KINDS: tuple[OutcomeKind, ...] = ("reasks", "fallbacks", "unusable")


class RoleOutcomes(BaseModel):
    """One role's re-asks, fallbacks and unusable answers, each by reason (`length`, `unparseable`, ...)."""

    model_config = ConfigDict(extra="forbid")

    reasks: dict[str, int] = Field(default_factory=dict, description="Answers asked for again, by what was wrong.")
    fallbacks: dict[str, int] = Field(default_factory=dict, description="What replaced an unusable answer (a default, a dropped row, ...), by why.")
    unusable: dict[str, int] = Field(default_factory=dict, description="Answers still unusable after every re-ask (unscored verdicts, ...), by why.")

    def total(self, kind: OutcomeKind) -> int:
        return sum(getattr(self, kind).values())

    def empty(self) -> bool:
        return not any(getattr(self, k) for k in KINDS)


class OutcomeMeter:
    """Thread-safe counts per role (stages run their calls in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, RoleOutcomes] = {}

    def add(self, kind: OutcomeKind, role: str, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        with self._lock:
            bucket = getattr(self._counts.setdefault(role, RoleOutcomes()), kind)
            bucket[reason] = bucket.get(reason, 0) + n

    def snapshot(self) -> dict[str, RoleOutcomes]:
        """A copy per role, reasons in sorted order (so lines and manifests read the same every run)."""
        with self._lock:
            return {
                role: RoleOutcomes(**{k: dict(sorted(getattr(o, k).items())) for k in KINDS}) for role, o in sorted(self._counts.items())
            }


def record_outcome(engine: Any, kind: OutcomeKind, role: str, reason: str, n: int = 1) -> None:
    """Count on the engine's meter; engines without one (test doubles, `None` offline) are skipped."""
    meter = getattr(engine, "outcomes", None)
    if isinstance(meter, OutcomeMeter):
        meter.add(kind, role, reason, n)


def outcomes_since(before: dict[str, RoleOutcomes], after: dict[str, RoleOutcomes]) -> dict[str, RoleOutcomes]:
    """What was counted between two snapshots of one meter, per role; roles with nothing new are left out."""
    out: dict[str, RoleOutcomes] = {}
    for role, now in after.items():
        was = before.get(role, RoleOutcomes())
        diff = RoleOutcomes()
        for kind in KINDS:
            old = getattr(was, kind)
            grown = {r: c - old.get(r, 0) for r, c in getattr(now, kind).items() if c - old.get(r, 0) > 0}
            setattr(diff, kind, dict(sorted(grown.items())))
        if not diff.empty():
            out[role] = diff
    return out


def outcome_line(outcomes: dict[str, RoleOutcomes]) -> str:
    """One line for a stage's end: `generator 3 re-asks (length 2, unparseable 1), 1 fallback; judge 2 unusable (...)`."""
    if not outcomes:
        return "roles: every answer usable at the first ask (0 re-asks, 0 fallbacks, 0 unusable)"
    parts = []
    for role, o in outcomes.items():
        pieces = []
        for kind, word in (("reasks", "re-ask"), ("fallbacks", "fallback"), ("unusable", "unusable")):
            counts = getattr(o, kind)
            n = sum(counts.values())
            label = word if n == 1 or kind == "unusable" else f"{word}s"
            detail = ", ".join(f"{reason} {c}" for reason, c in counts.items())
            pieces.append(f"{n} {label}" + (f" ({detail})" if n else ""))
        parts.append(f"{role} " + ", ".join(pieces))
    return "roles: " + "; ".join(parts)
