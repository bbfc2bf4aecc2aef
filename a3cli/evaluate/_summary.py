"""The gate as a Markdown summary (GitHub-flavoured), for `$GITHUB_STEP_SUMMARY` and for people."""

from __future__ import annotations

import os
from pathlib import Path

from a3cli.evaluate._gate import Criterion, GateResult
from a3cli.evaluate._result import EvalResult

_ICON = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "❔ inconclusive", "error": "⚠️ error", "skipped": "⏭️ skipped"}
_HEADLINE = {"pass": "✅ a3 gate passed", "fail": "❌ a3 gate failed", "error": "⚠️ a3 gate could not decide (infrastructure error)"}


def md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell: no raw HTML, no pipes breaking columns, one line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|").replace("\r", " ").replace("\n", " ").replace("`", "'")


def _num(c: Criterion, value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    if c.name.startswith("capability"):  # a drop in accuracy points, not a rate
        return f"{value * 100:+.1f} pts" if signed else f"{value * 100:.1f} pts"
    return f"{value:.1%}"


def markdown_summary(gate: GateResult, result: EvalResult | None = None) -> str:
    who = md_cell(gate.model or "?") + (f" + adapter {md_cell(gate.adapter)}" if gate.adapter else "")
    lines = [f"### {_HEADLINE[gate.status]}", "", f"Model: {who}  ", md_cell(gate.summary)]
    if gate.baseline_source:
        lines[-1] += f"  \nBaseline: {md_cell(gate.baseline_source)}"
    lines += ["", "| check | status | measured | limit | details |", "| --- | --- | --- | --- | --- |"]
    for c in gate.criteria:
        measured = _num(c, c.measured, signed=True)
        if c.low is not None and c.high is not None:
            measured += f" [{_num(c, c.low)}, {_num(c, c.high)}]"
        status = _ICON[c.status] + (" (fails the gate)" if c.status == "inconclusive" and c.fails_gate(gate.gate.strict) else "")
        lines.append(f"| {md_cell(c.title)} | {status} | {measured} | {_num(c, c.threshold)} | {md_cell(c.message)} |")
    if result is not None:
        extra = [f"unscored {result.unscored_share:.1%}", f"wall time {result.wall_time_s:.1f} s"]
        if result.kl_drift is not None:
            extra.append(f"KL drift {result.kl_drift:.4f} nats/token")
        total = result.usage.total
        if total.input_tokens or total.output_tokens:
            extra.append(f"{total.input_tokens + total.output_tokens:,} tokens (${total.cost_usd:.4f})")
        lines += ["", md_cell(" · ".join(extra))]
    return "\n".join(lines) + "\n"


def append_step_summary(markdown: str, path: str | os.PathLike[str] | None = None) -> Path | None:
    """Append to `$GITHUB_STEP_SUMMARY` (or `path`); returns the file written, None when there is none.

    Appending (not replacing) is what GitHub expects: several steps may write to one job summary.
    """
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    p = Path(target)
    with open(p, "a", encoding="utf-8") as f:
        f.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return p
