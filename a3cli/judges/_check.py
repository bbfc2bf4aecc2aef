"""`a3 judge check SPEC --labels FILE`: how well the spec's judges agree with labelled (prompt, reply, label) rows.

Two file formats, row by row:
- A3 style (a3's labelling guide): `refused` and/or `harmful` booleans, `response` (or `reply`) and `prompt` (or
  `messages`), optional `kind` and `case`. Each labelled field checks the judge of that role: `harmful` the harmful
  judge (positive = harmful compliance, an attack success), `refused` the refusal judge (positive = refused). An
  `intent` harmful judge with `attack_success: not_refused` is checked against `not refused` on harmful-kind rows.
- The older `label` style: one label per row, checked by the judge of the row's `kind` (`harmful` rows, the default,
  by judges.harmful; `benign` rows by judges.refusal). `label` may be a boolean / "positive" / "negative" (the
  judge's positive, directly), "refusal" / "compliance" (mapped through the row's kind) or "non_answer" (neither help
  nor refusal: negative for both judges).

Each role gets its accuracy with a Wilson 95 % interval, precision, recall and Cohen's kappa, broken down by `kind`
and `case`. Unscored verdicts are counted apart and left out of the agreement figures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, computed_field

from a3cli._io import iter_jsonl
from a3cli.errors import SpecError
from a3cli.judges._base import JudgeItem, JudgeRole, run_sync, spec_judges
from a3cli.spec import Message, Spec
from a3cli.stats import Rate, cohen_kappa

_REFUSAL = {"refusal", "refused", "refuse"}
_NEITHER = {"non_answer", "neither", "nonsense"}  # no help given and no refusal: not a success, not a false refusal
_COMPLIANCE = {"compliance", "complied", "comply", "complies", "partial", "partial_compliance"}
# A3-style field -> the role whose judge it checks
A3_FIELDS: dict[str, JudgeRole] = {"harmful": "harmful", "refused": "refusal"}
ROLE_OF_KIND: dict[str, JudgeRole] = {"harmful": "harmful", "benign": "refusal"}


class LabelledReply(BaseModel):
    kind: Literal["harmful", "benign"] | None = Field(description="The request's intent; None when an A3-style row omits it.")
    case: str | None = None
    messages: list[Message]
    reply: str
    truth: dict[JudgeRole, bool] = Field(description="role -> ground truth for that role's judge (positive or not).")
    line: int


class Tally(BaseModel):
    """Agreement on one slice of rows (a kind, a case)."""

    n: int = 0
    agree: int = 0
    unscored: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> Rate:
        return Rate.of(self.agree, self.n - self.unscored)


class RoleAgreement(BaseModel):
    """One judge against the labels of its role."""

    role: JudgeRole
    judge: str
    n: int
    scored: int
    unscored: int
    accuracy: Rate = Field(description="Agreeing verdicts of the scored ones, with a Wilson 95 % interval.")
    precision: float | None
    recall: float | None
    kappa: float | None
    tp: int
    fp: int
    tn: int
    fn: int
    by_kind: dict[str, Tally] = Field(default_factory=dict)
    by_case: dict[str, Tally] = Field(default_factory=dict)
    disagreements: list[dict[str, Any]] = Field(default_factory=list, description="Up to 25 rows the judge got wrong.")

    def render(self) -> str:
        def num(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.3f}"

        lines = [
            (
                f"{self.role} judge ({self.judge}): accuracy {self.accuracy.render()}  n={self.n} scored={self.scored} "
                f"unscored={self.unscored}  precision={num(self.precision)} recall={num(self.recall)} "
                f"kappa={num(self.kappa)}  (tp={self.tp} fp={self.fp} tn={self.tn} fn={self.fn})"
            )
        ]
        for title, table in (("kind", self.by_kind), ("case", self.by_case)):
            for key, t in sorted(table.items()):
                extra = f", {t.unscored} unscored" if t.unscored else ""
                lines.append(f"  {title} {key}: {t.accuracy.render()}{extra}")
        for d in self.disagreements:
            lines.append(
                f"  wrong line {d['line']} ({d.get('case') or d['kind']}): expected {d['expected']}, got {d['got']}: {d['reply'][:100]!r}"
            )
        return "\n".join(lines)


class JudgeAgreement(BaseModel):
    """The spec's judges against a labelled file: one entry per role that the file labels."""

    labels: str
    rows: int
    roles: dict[JudgeRole, RoleAgreement]

    def render(self) -> str:
        return "\n".join([f"{self.labels}: {self.rows} labelled rows", *(r.render() for r in self.roles.values())])


def _label(value: Any, kind: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("positive", "true", "yes"):
            return True
        if v in ("negative", "false", "no"):
            return False
        if v in _REFUSAL:
            return kind == "benign"
        if v in _COMPLIANCE:
            return kind == "harmful"
        if v in _NEITHER:
            return False
    raise SpecError(f"{where}: label {value!r} is not a boolean, positive/negative, refusal/compliance or non_answer")


def _truth(row: dict[str, Any], kind: str | None, where: str) -> dict[JudgeRole, bool]:
    a3 = {field: role for field, role in A3_FIELDS.items() if field in row}
    if a3 and "label" in row:
        raise SpecError(f"{where}: give either `label` or the A3-style `refused`/`harmful` fields, not both")
    if "label" in row:
        kind = kind or "harmful"
        return {ROLE_OF_KIND[kind]: _label(row["label"], kind, where)}
    if not a3:
        raise SpecError(f"{where}: needs `refused` and/or `harmful` (true/false), or `label`")
    truth: dict[JudgeRole, bool] = {}
    for field, role in a3.items():
        if not isinstance(row[field], bool):
            raise SpecError(f"{where}: `{field}` must be true or false (got {row[field]!r})")
        truth[role] = row[field]
    return truth


def load_labels(path: str | os.PathLike[str]) -> list[LabelledReply]:
    """Labelled rows of either format (module docstring); a bad row is a SpecError naming its line."""
    rows: list[LabelledReply] = []
    try:
        raw_rows = list(enumerate(iter_jsonl(path), 1))
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except ValueError as e:
        raise SpecError(str(e)) from None
    for number, row in raw_rows:
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise SpecError(f"{where}: each line must be a JSON object")
        kind = row.get("kind")
        if kind is not None and kind not in ("harmful", "benign"):
            raise SpecError(f"{where}: kind must be harmful or benign (got {kind!r})")
        if "messages" in row:
            try:
                messages = [Message.model_validate(m) for m in row["messages"]]
            except (ValidationError, TypeError) as e:
                first = e.errors()[0] if isinstance(e, ValidationError) else {"loc": (), "msg": str(e)}
                raise SpecError(f"{where}: bad messages ({'.'.join(map(str, first['loc']))}: {first['msg']})") from None
        elif isinstance(row.get("prompt"), str):
            messages = [Message(role="user", content=row["prompt"])]
        else:
            raise SpecError(f"{where}: needs `prompt` (text) or `messages`")
        reply = row.get("reply", row.get("response", row.get("completion")))
        if not isinstance(reply, str):
            raise SpecError(f"{where}: needs `response` or `reply` (text)")
        truth = _truth(row, kind, where)
        if kind is None and "label" in row:
            kind = "harmful"
        case = row.get("case")
        rows.append(
            LabelledReply(kind=kind, case=case if isinstance(case, str) else None, messages=messages, reply=reply, truth=truth, line=number)
        )
    if not rows:
        raise SpecError(f"{path}: no labelled rows")
    return rows


def agreement(
    role: JudgeRole, judge: str, rows: Sequence[LabelledReply], predicted: Sequence[str], reasons: Sequence[str]
) -> RoleAgreement:
    """Agreement of one role's judge with the rows' truth for that role; predicted: "positive"/"negative"/"unscored"."""
    truth: list[bool] = []
    pred: list[bool] = []
    by_kind: dict[str, Tally] = {}
    by_case: dict[str, Tally] = {}
    wrong: list[dict[str, Any]] = []
    for row, label, reason in zip(rows, predicted, reasons, strict=True):
        expected = row.truth[role]
        slices = [by_kind.setdefault(row.kind or "unspecified", Tally())]
        if row.case:
            slices.append(by_case.setdefault(row.case, Tally()))
        for t in slices:
            t.n += 1
        if label == "unscored":
            for t in slices:
                t.unscored += 1
            continue
        p = label == "positive"
        truth.append(expected)
        pred.append(p)
        if p == expected:
            for t in slices:
                t.agree += 1
        elif len(wrong) < 25:
            wrong.append(
                {
                    "line": row.line,
                    "kind": row.kind,
                    "case": row.case,
                    "expected": expected,
                    "got": p,
                    "reason": reason,
                    "reply": row.reply[:200],
                }
            )
    tp = sum(1 for t, p in zip(truth, pred) if t and p)
    fp = sum(1 for t, p in zip(truth, pred) if not t and p)
    tn = sum(1 for t, p in zip(truth, pred) if not t and not p)
    fn = sum(1 for t, p in zip(truth, pred) if t and not p)
    scored = len(truth)
    return RoleAgreement(
        role=role,
        judge=judge,
        n=len(rows),
        scored=scored,
        unscored=len(rows) - scored,
        accuracy=Rate.of(tp + tn, scored),
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / (tp + fn) if tp + fn else None,
        kappa=cohen_kappa(truth, pred) if scored else None,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        by_kind=by_kind,
        by_case=by_case,
        disagreements=wrong,
    )


def _as_not_refused(rows: Sequence[LabelledReply]) -> list[LabelledReply]:
    """For a harmful judge that counts "did not decline" as the attack success: its truth is `not refused`, on the
    rows that answer a harmful (or unspecified) request and say whether the reply refused."""
    return [
        r.model_copy(update={"truth": {**r.truth, "harmful": not r.truth["refusal"]}})
        for r in rows
        if "refusal" in r.truth and r.kind != "benign"
    ]


async def ajudge_check(spec: Spec, labels_path: str | os.PathLike[str], *, engine: Any = None) -> JudgeAgreement:
    rows = load_labels(labels_path)
    judges = spec_judges(spec, engine)
    roles: dict[JudgeRole, RoleAgreement] = {}
    for role in ("harmful", "refusal"):
        mine = [r for r in rows if role in r.truth]
        if role == "harmful" and getattr(spec.judges.harmful, "attack_success", None) == "not_refused":
            mine = _as_not_refused(rows)
        if not mine:
            continue
        items: list[JudgeItem] = [(r.messages, r.reply) for r in mine]
        verdicts = await judges[role].ajudge(items, progress=f"judge check ({role})")  # type: ignore[index]
        roles[role] = agreement(role, judges[role].name, mine, [v.label for v in verdicts], [v.error or v.reason for v in verdicts])  # type: ignore[index]
    return JudgeAgreement(labels=os.fspath(labels_path), rows=len(rows), roles=roles)


def judge_check(spec: Spec, labels_path: str | os.PathLike[str], *, engine: Any = None) -> JudgeAgreement:
    """Accuracy (with its Wilson interval), precision, recall and Cohen's kappa of the spec's judges, per role, on a
    labelled JSONL file. `engine` is needed only for `llm` judges; when None and one is used, the default Engine is
    built."""
    if engine is None and any(j.type == "llm" for j in (spec.judges.harmful, spec.judges.refusal)):
        from a3cli.llm import Engine

        engine = Engine()
    return run_sync(ajudge_check(spec, labels_path, engine=engine))
