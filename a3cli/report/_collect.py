"""Read a run directory into plain data for the report. Every file is optional: a stage that has not run (or a file
that cannot be read) becomes `None` plus a note, never an exception, so a report can be written at any point of a run.

Files read (relative to the run directory):
  spec.json                                   attack name, target, gate
  <stage>/manifest.json                       status, wall time, token usage and cost per stage
  generate/probes.jsonl, generate/results.jsonl   baseline replies and verdicts for every probe
  generate/hypotheses.jsonl                   hypothesis texts
  generate/experiment_log.md (and any other *.md in generate/, train/, defend/)   the experiment log
  split/train.jsonl, split/validation.jsonl, split/ood.jsonl   which split each probe is in
  split/baseline.json                         baseline ASR/FPR (when no full baseline evaluation exists)
  train/baseline/result.json                  full baseline evaluation (EvalResult, with capability)
  train/iteration_N/result.json, .../samples.jsonl   each training iteration's EvalResult and samples
                                              (metrics.json is read too, for runs written before the rename)
  train/selection.json, train/best.json       the selection rule's table and the chosen checkpoint
  eval/gate.json                              the pipeline's gate on the chosen checkpoint
  eval/<name>/result.json, gate.json, samples.jsonl   each `a3 eval` run into the run directory
  defend/<method>/result.json                 each defence method's rows (MethodResult), or an EvalResult
  defend/<name>/samples.jsonl                 that defence's samples, when written
  redteam/result.json, redteam/eval.json, redteam/attacks.jsonl, redteam/*/result.json   the red-team stage
  compare/comparison.json, compare/<name>/samples.jsonl, compare/manifest.json   `a3 compare`'s targets side by side
  redteam/success.json                        the red-teamer's held-out attack success (attack mode)
  loops/summary.json and each loop's result   `a3 run --loops`: per loop the red-teamer's success before and after,
                                              and the retrained checkpoint's EvalResult
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

STAGES = ("generate", "split", "expect", "train", "eval", "defend", "redteam")
MAX_TEXT = 6000  # characters of a prompt or reply kept in the sample browser
MAX_SAMPLES_PER_SOURCE = 3000

_ITERATION_DIR = re.compile(r"^iteration_(\d+)$")


@dataclass
class MetricsRow:
    """One row of the closing table: a model or defence measured on validation and OOD."""

    label: str
    kind: str  # baseline | chosen | loop | eval | defence | redteam
    data: dict[str, Any]  # an EvalResult-shaped dict (validation/ood SplitMetrics, capability, usage, wall_time_s)
    source: str
    note: str = ""


@dataclass
class ReportData:
    run_dir: Path
    spec: dict[str, Any] | None = None
    stages: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    baseline: MetricsRow | None = None
    chosen: MetricsRow | None = None
    chosen_iteration: int | str | None = None
    best: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    iterations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    eval_rows: list[MetricsRow] = field(default_factory=list)
    gates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    defences: list[MetricsRow] = field(default_factory=list)
    defence_notes: list[str] = field(default_factory=list)
    redteam: dict[str, Any] | None = None
    redteam_rows: list[MetricsRow] = field(default_factory=list)
    redteam_attacks: list[dict[str, Any]] = field(default_factory=list)
    compare_rows: list[MetricsRow] = field(default_factory=list)
    compare_notes: list[str] = field(default_factory=list)
    redteam_success: dict[str, Any] | None = None
    loops: list[dict[str, Any]] = field(default_factory=list)  # loops/summary.json rows
    loop_rows: list[MetricsRow] = field(default_factory=list)  # each loop's retrained checkpoint
    hypotheses: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Reader:
    def __init__(self, root: Path, problems: list[str]):
        self.root = root
        self.problems = problems

    def json(self, rel: str | Path) -> Any:
        p = self.root / rel
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self.problems.append(f"{Path(rel).as_posix()}: unreadable ({_why(e)})")
            return None

    def jsonl(self, rel: str | Path, limit: int | None = None) -> list[Any]:
        p = self.root / rel
        if not p.is_file():
            return []
        rows: list[Any] = []
        try:
            with open(p, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        self.problems.append(f"{Path(rel).as_posix()}:{number}: not valid JSON; line skipped")
                        continue
                    if limit is not None and len(rows) >= limit:
                        self.problems.append(f"{Path(rel).as_posix()}: only the first {limit} rows are shown")
                        break
        except OSError as e:
            self.problems.append(f"{Path(rel).as_posix()}: unreadable ({_why(e)})")
        return rows

    def text(self, rel: str | Path) -> str | None:
        p = self.root / rel
        try:
            return p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


def _has_metrics(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("validation"), dict) and isinstance(data.get("ood"), dict)


def _clip(text: Any) -> Any:
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return text[:MAX_TEXT] + f"… [{len(text) - MAX_TEXT} more characters]"
    return text


def _prompt_text(messages: Any, prefill: Any) -> str:
    from a3cli.evaluate import render_prompt
    from a3cli.spec import Message

    try:
        return render_prompt([Message.model_validate(m) for m in messages], prefill)
    except (ValidationError, TypeError, AttributeError):  # a malformed row: show it as it is rather than drop it
        return json.dumps(messages, ensure_ascii=False)


def _sample(source: str, row: dict[str, Any]) -> dict[str, Any]:
    verdict = row.get("verdict")
    label = verdict.get("label") if isinstance(verdict, dict) else verdict
    reason = row.get("reason") or (verdict.get("reason") if isinstance(verdict, dict) else "")
    return {
        "source": source,
        "split": str(row.get("split") or ""),
        "hypothesis": str(row.get("hypothesis") or row.get("hypothesis_id") or ""),
        "kind": str(row.get("kind") or ""),
        "verdict": str(label or ""),
        "success": row.get("success"),
        "prompt": _clip(row.get("prompt") or ""),
        "reply": _clip(row.get("reply")),
        "reason": _clip(reason or ""),
        "error": _clip(row.get("error")),
    }


def _iteration_dirs(train: Path) -> list[tuple[int, Path]]:
    if not train.is_dir():
        return []
    out = []
    for p in train.iterdir():
        m = _ITERATION_DIR.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def collect(run_dir: str | Path) -> ReportData:
    root = Path(run_dir)
    data = ReportData(run_dir=root)
    r = _Reader(root, data.problems)
    data.spec = r.json("spec.json")
    for stage in STAGES:
        data.stages[stage] = r.json(f"{stage}/manifest.json")
    compared = r.json("compare/manifest.json")
    if compared is not None:  # a stage of its own only where `a3 compare` ran
        data.stages["compare"] = compared

    # Hypotheses and the experiment log.
    for h in r.jsonl("generate/hypotheses.jsonl"):
        if isinstance(h, dict) and h.get("id") is not None:
            data.hypotheses[str(h["id"])] = h
    for folder in ("generate", "train", "defend"):
        d = root / folder
        if d.is_dir():
            for md in sorted(d.rglob("*.md")):
                if md.name == "README.md" and (md.parent / "adapter_config.json").is_file():
                    continue  # peft's generated model card of a saved adapter: placeholders, not a log
                text = r.text(md.relative_to(root))
                if text is not None:
                    data.logs.append((md.relative_to(root).as_posix(), text))
    data.logs.sort(key=lambda item: item[0] != "generate/experiment_log.md")  # the experiment log first

    # Baseline: a full evaluation when there is one, else the split stage's numbers.
    for rel in ("train/baseline/result.json", "train/baseline/metrics.json", "eval/baseline/result.json", "split/baseline.json"):
        b = r.json(rel)
        if _has_metrics(b):
            data.baseline = MetricsRow("Baseline (no repair)", "baseline", b, rel)
            break

    # Training iterations and the chosen one.
    result_file: dict[int, str] = {}
    for n, path in _iteration_dirs(root / "train"):
        for name in ("result.json", "metrics.json"):
            rel = (path.relative_to(root) / name).as_posix()
            m = r.json(rel)
            if _has_metrics(m):
                data.iterations.append((n, m))
                result_file[n] = rel
                break
    data.selection = r.json("train/selection.json")
    data.best = r.json("train/best.json")
    chosen = (data.best or {}).get("iteration", (data.selection or {}).get("chosen"))
    data.chosen_iteration = chosen
    if isinstance(chosen, int):
        m = dict(data.iterations).get(chosen)
        if m is not None:
            data.chosen = MetricsRow(f"Chosen checkpoint (iteration {chosen})", "chosen", m, result_file[chosen],
                                     note=str((data.best or {}).get("reason") or ""))
        else:
            data.problems.append(f"train/best.json names iteration {chosen}, but train/iteration_{chosen}/result.json is missing")
    elif chosen == "baseline" and data.baseline is not None:
        data.chosen = MetricsRow("Chosen: baseline kept", "chosen", data.baseline.data, data.baseline.source,
                                 note=str((data.best or {}).get("reason") or "no iteration beat the baseline"))

    gate = r.json("eval/gate.json")
    if isinstance(gate, dict):
        data.gates.append(("chosen checkpoint (a3 run)", gate))
    ev_root = root / "eval"
    if ev_root.is_dir():
        for d in sorted(p for p in ev_root.iterdir() if p.is_dir()):
            rel = f"eval/{d.name}/result.json"
            ev = r.json(rel)
            if _has_metrics(ev) and not (data.baseline is not None and data.baseline.source == rel):
                who = str(ev.get("model", "?")) + (f" + {ev['adapter']}" if ev.get("adapter") else "")
                data.eval_rows.append(MetricsRow(f"a3 eval {d.name}: {who}", "eval", ev, rel))
            gate = r.json(f"eval/{d.name}/gate.json")
            if isinstance(gate, dict):
                data.gates.append((f"a3 eval {d.name}", gate))

    defend = root / "defend"
    if defend.is_dir():
        for d in sorted(p for p in defend.iterdir() if p.is_dir()):
            _collect_defence(data, r, d.name)

    # Red team: the RL generator's own result, and any probe-style evaluations of its attacks.
    data.redteam = r.json("redteam/result.json")
    if data.redteam is not None and not isinstance(data.redteam.get("eval"), dict):
        comparison = r.json("redteam/eval.json")
        if isinstance(comparison, dict):
            data.redteam = {**data.redteam, "eval": comparison}
    if _has_metrics(data.redteam):
        data.redteam_rows.append(MetricsRow("Red team", "redteam", data.redteam, "redteam/result.json"))
    rt = root / "redteam"
    if rt.is_dir():
        for d in sorted(p for p in rt.iterdir() if p.is_dir()):
            res = r.json(f"redteam/{d.name}/result.json")
            if _has_metrics(res):
                data.redteam_rows.append(MetricsRow(f"Red team: {d.name}", "redteam", res, f"redteam/{d.name}/result.json"))
    data.redteam_attacks = [a for a in r.jsonl("redteam/attacks.jsonl", limit=50) if isinstance(a, dict)]
    success = r.json("redteam/success.json")
    data.redteam_success = success if isinstance(success, dict) else None

    # Hardening loops: each loop's retrained checkpoint, measured on the run's own held-out probes.
    summary = r.json("loops/summary.json")
    data.loops = [row for row in (summary or {}).get("loops", []) if isinstance(row, dict)] if isinstance(summary, dict) else []
    for row in data.loops:
        if isinstance(row.get("loop"), int) and row["loop"] > 0 and not row.get("stopped") and isinstance(row.get("result"), str):
            m = r.json(row["result"])
            if _has_metrics(m):
                data.loop_rows.append(MetricsRow(f"Hardening loop {row['loop']}: {row.get('checkpoint')}", "loop", m, row["result"]))

    _collect_compare(data, r)
    _collect_samples(data, r)
    return data


def _collect_compare(data: ReportData, r: _Reader) -> None:
    """`compare/comparison.json`: each target's row (EvalResult-shaped) and the provider quirks it met."""
    table = r.json("compare/comparison.json")
    if table is None:
        return
    rows = table.get("rows") if isinstance(table, dict) else None
    if not isinstance(rows, list):
        data.problems.append("compare/comparison.json has no rows")
        return
    for row in rows:
        if not _has_metrics(row):
            continue
        model = row.get("model") if isinstance(row.get("model"), dict) else {}
        who = f"{model.get('provider', '?')} {model.get('model', '?')}" + (f" + {model['adapter']}" if model.get("adapter") else "")
        note = who + (" — infrastructure: mostly unscored, not comparable" if row.get("status") == "infrastructure" else "")
        data.compare_rows.append(MetricsRow(f"{row.get('name')}", "compare", row, str(row.get("result") or "compare/comparison.json"), note=note))
        data.compare_notes += [f"{row.get('name')}: {q}" for q in row.get("quirks") or []]
    data.compare_notes += [str(n) for n in table.get("notes") or []]


def _collect_defence(data: ReportData, r: _Reader, name: str) -> None:
    """`defend/<method>/result.json`: the defend stage's MethodResult (rows with their own cost), or an EvalResult."""
    rel = f"defend/{name}/result.json"
    res = r.json(rel)
    if res is None:
        return
    if _has_metrics(res):
        data.defences.append(MetricsRow(f"Defence: {name}", "defence", res, rel, note=str(res.get("description") or "")))
        return
    rows = res.get("rows") if isinstance(res, dict) else None
    if isinstance(rows, list) and any(_has_metrics(row) for row in rows):
        for row in rows:
            if not _has_metrics(row):
                continue
            cost = row.get("cost") if isinstance(row.get("cost"), dict) else {}
            added = row.get("added_prompt_tokens") if isinstance(row.get("added_prompt_tokens"), dict) else {}
            note = str(row.get("detail") or "")
            if isinstance(added.get("per_request"), (int, float)) and added["per_request"] > 0:
                note += f" Adds {added['per_request']:.0f} prompt tokens per request ({added.get('method')})."
            search = cost.get("search") if isinstance(cost.get("search"), dict) else None
            if search is not None:
                note += " " + _search_note(search)
            flat = {**row, "usage": cost.get("usage"), "wall_time_s": cost.get("wall_time_s")}
            data.defences.append(MetricsRow(f"Defence: {row.get('defence') or name}", "defence", flat, rel, note=note.strip()))
    elif isinstance(res, dict) and res.get("skipped"):
        data.defence_notes.append(f"Defence {name}: skipped ({res['skipped']})")
    else:
        data.problems.append(f"{rel} has no validation/OOD metrics")


def _search_note(s: dict[str, Any]) -> str:
    """A prompt optimiser's own cost, in one sentence (tokens and calls of the search alone; the row's totals add the
    measurement of the prompt it found)."""
    total = (s.get("usage") or {}).get("total") or {}
    tokens = int(total.get("input_tokens") or 0) + int(total.get("output_tokens") or 0)
    used = s.get("metric_calls")
    allowed = s.get("budget_metric_calls")
    return (
        f"Search: {s.get('optimizer')}, {used if used is not None else '?'}"
        + (f" of {allowed}" if allowed is not None else "")
        + f" metric calls ({s.get('budget')}) on {s.get('train_examples')} training probes with a valset of "
        f"{s.get('val_examples')} validation probes; {total.get('calls', 0)} model calls, {tokens:,} tokens, "
        f"{float(s.get('wall_time_s') or 0):.0f} s."
    )


def _collect_samples(data: ReportData, r: _Reader) -> None:
    root = data.run_dir
    split_of: dict[str, str] = {}
    for split in ("train", "validation", "ood"):
        for row in r.jsonl(f"split/{split}.jsonl"):
            probe = row.get("probe", row) if isinstance(row, dict) else None
            if isinstance(probe, dict) and probe.get("id") is not None:
                split_of[str(probe["id"])] = split

    probes = {str(p["id"]): p for p in r.jsonl("generate/probes.jsonl") if isinstance(p, dict) and p.get("id") is not None}
    results = r.jsonl("generate/results.jsonl", limit=MAX_SAMPLES_PER_SOURCE)
    if results:
        for res in results:
            if not isinstance(res, dict):
                continue
            p = probes.get(str(res.get("probe_id")), {})
            row = {**res, "split": split_of.get(str(res.get("probe_id")), "unsplit"),
                   "hypothesis": res.get("hypothesis_id"), "prompt": _prompt_text(p.get("messages", []), p.get("prefill"))}
            data.samples.append(_sample("baseline", row))
    else:
        for row in r.jsonl("train/baseline/samples.jsonl", limit=MAX_SAMPLES_PER_SOURCE):
            if isinstance(row, dict):
                data.samples.append(_sample("baseline", row))

    if isinstance(data.chosen_iteration, int):
        rel = f"train/iteration_{data.chosen_iteration}/samples.jsonl"
        for row in r.jsonl(rel, limit=MAX_SAMPLES_PER_SOURCE):
            if isinstance(row, dict):
                data.samples.append(_sample(f"iteration {data.chosen_iteration} (chosen)", row))
    for ev in data.eval_rows:
        folder = Path(ev.source).parent.as_posix()
        for row in r.jsonl(f"{folder}/samples.jsonl", limit=MAX_SAMPLES_PER_SOURCE):
            if isinstance(row, dict):
                data.samples.append(_sample(f"a3 eval {Path(folder).name}", row))
    defend = root / "defend"
    if defend.is_dir():
        for d in sorted(p for p in defend.iterdir() if p.is_dir()):
            for row in r.jsonl(f"defend/{d.name}/samples.jsonl", limit=MAX_SAMPLES_PER_SOURCE):
                if isinstance(row, dict):
                    data.samples.append(_sample(f"defence {d.name}", row))
    for compared in data.compare_rows:
        for row in r.jsonl(f"{Path(compared.source).parent.as_posix()}/samples.jsonl", limit=MAX_SAMPLES_PER_SOURCE):
            if isinstance(row, dict):
                data.samples.append(_sample(f"compare {compared.label}", row))


def _why(e: Exception) -> str:
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(e, ValueError):
        return "not valid JSON"
    from a3cli._crashlog import describe_exception

    return describe_exception(e)
