"""The report as one self-contained HTML file: inline CSS, inline SVG charts, the samples as inline JSON and a small
vanilla-JS browser. Nothing is loaded from outside (a Content-Security-Policy forbids it, and allows only the one
script whose hash it names), and every piece of run text, above all model replies, is escaped or set as textContent.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from a3cli import __version__
from a3cli.report._collect import STAGES, MetricsRow, ReportData
from a3cli.report._markdown import render_markdown
from a3cli.report._svg import PALETTE, Point, Series, bar_chart, line_chart

NOT_RUN = '<p class="notrun">Not run yet.</p>'


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _pct(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) else f"{x:.1%}"


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def rate_cell(rate: Any) -> str:
    if not isinstance(rate, dict) or rate.get("rate") is None:
        n = rate.get("n") if isinstance(rate, dict) else None
        return '<td class="num">–' + (f' <small>0 scored of {e(n)}</small>' if n == 0 else "") + "</td>"
    return (f'<td class="num">{_pct(rate["rate"])} <small>[{_pct(rate.get("low"))}–{_pct(rate.get("high"))}]'
            f'<br>{e(rate.get("k"))}/{e(rate.get("n"))}</small></td>')


def capability_text(cap: Any) -> str:
    if not isinstance(cap, dict) or not cap:
        return "–"
    parts = []
    for task, s in sorted(cap.items()):
        if isinstance(s, dict) and isinstance(s.get("accuracy"), (int, float)):
            se = f" ± {s['stderr'] * 100:.1f}" if isinstance(s.get("stderr"), (int, float)) else ""
            parts.append(f"{e(task)}: {s['accuracy']:.1%}{se} <small>(n={e(s.get('n'))})</small>")
    return "<br>".join(parts) or "–"


def _usage_cells(usage: Any) -> str:
    total = _get(usage, "total")
    if not isinstance(total, dict):
        return '<td class="num">–</td><td class="num">–</td>'
    tokens = int(total.get("input_tokens") or 0) + int(total.get("output_tokens") or 0)
    cost = total.get("cost_usd")
    return f'<td class="num">{tokens:,}</td><td class="num">{"–" if cost is None else f"${cost:.4f}"}</td>'


def _unscored_share(d: dict[str, Any]) -> float | None:
    if isinstance(d.get("unscored_share"), (int, float)):
        return d["unscored_share"]
    total = unscored = 0
    parts = [d.get("validation"), d.get("ood"), *(s.get("metrics") for s in (d.get("suites") or {}).values() if isinstance(s, dict))]
    for m in parts:
        m = m or {}
        try:
            total += int(m["n_harmful"]) + int(m["n_benign"])
            unscored += int(m["unscored_harmful"]) + int(m["unscored_benign"])
        except (KeyError, TypeError, ValueError):
            return None
    return unscored / total if total else None


def _secs(x: Any) -> str:
    if not isinstance(x, (int, float)):
        return "–"
    return f"{x:.1f} s" if x < 120 else f"{x / 60:.1f} min"


def _suite_columns(rows: list[MetricsRow]) -> dict[str, str]:
    """Suite name -> column title, over every row, in first-seen order."""
    out: dict[str, str] = {}
    for row in rows:
        for name, s in (row.data.get("suites") or {}).items():
            if isinstance(s, dict):
                out.setdefault(name, f"{'ASR' if s.get('kind') == 'harmful' else 'over-refusal'} {name} (suite)")
    return out


def metrics_table(rows: list[MetricsRow], table_id: str) -> str:
    suites = _suite_columns(rows)
    head = ("<tr><th>model / defence</th><th>ASR validation</th><th>FPR validation</th><th>ASR OOD</th><th>FPR OOD</th>"
            + "".join(f"<th>{e(title)}</th>" for title in suites.values())
            + "<th>capability</th><th>unscored</th><th>tokens</th><th>cost</th><th>wall time</th></tr>")
    body = []
    for row in rows:
        d = row.data
        note = f'<br><small class="note">{e(row.note)}</small>' if row.note else ""
        measured = d.get("suites") or {}
        suite_cells = "".join(
            rate_cell(_get(measured, name, "metrics", "asr" if _get(measured, name, "kind") == "harmful" else "fpr"))
            if name in measured else '<td class="num">–</td>'
            for name in suites
        )
        body.append(
            f'<tr class="row-{e(row.kind)}"><th scope="row">{e(row.label)}<br><small class="src">{e(row.source)}</small>{note}</th>'
            + rate_cell(_get(d, "validation", "asr")) + rate_cell(_get(d, "validation", "fpr"))
            + rate_cell(_get(d, "ood", "asr")) + rate_cell(_get(d, "ood", "fpr"))
            + suite_cells
            + f"<td>{capability_text(d.get('capability'))}</td>"
            + f'<td class="num">{_pct(_unscored_share(d))}</td>'
            + _usage_cells(d.get("usage"))
            + f'<td class="num">{_secs(d.get("wall_time_s"))}</td></tr>'
        )
    return f'<table id="{e(table_id)}" class="metrics"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


# ------------------------------------------------------------------------------------------------------------- sections


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{e(sid)}"><h2>{e(title)}</h2>{body}</section>'


def section_summary(data: ReportData) -> str:
    rows = [r for r in (data.baseline, data.chosen) if r is not None] + data.loop_rows + data.eval_rows + data.defences
    if not rows:
        return _section("summary", "Results", NOT_RUN + "<p>No baseline, checkpoint or defence has been measured yet "
                        "(the split stage writes the baseline; training writes the checkpoints).</p>" + compare_tables(data))
    notes = []
    if data.chosen is None:
        notes.append("Training: not run yet." if data.stages.get("train") is None else "Training ran but no chosen checkpoint was found.")
    if not data.defences:
        notes.append("Defences: not run yet." if data.stages.get("defend") is None and not data.defence_notes else "Defences: no rows.")
    notes += data.defence_notes
    body = metrics_table(rows, "closing-table")
    body += ('<p class="legend">Rates over scored probes, with 95 % Wilson intervals and k/n; capability is accuracy ± '
             "standard error. Tokens and cost are those of each row's own evaluation. Choices (checkpoint, search, "
             "agent, defences) read the validation columns only; OOD and suites are reported, never used to choose.</p>")
    if notes:
        body += "".join(f'<p class="notrun">{e(n)}</p>' for n in notes)
    body += compare_tables(data)
    if data.loops:
        body += "<h3>Hardening loops</h3>" + loops_table(data)
    if data.redteam is not None or data.redteam_rows:
        body += "<h3>Red team</h3>" + redteam_tables(data)
    else:
        body += '<h3>Red team</h3><p class="notrun">Red team: not run yet.</p>'
    return _section("summary", "Results", body)


def compare_tables(data: ReportData) -> str:
    """`a3 compare`'s targets side by side, with the provider quirks each met; nothing when it has not run."""
    if not data.compare_rows:
        return ""
    return ("<h3>Targets compared (<code>a3 compare</code>)</h3>" + metrics_table(data.compare_rows, "compare-table")
            + '<p class="legend">Every target on the same validation, OOD and suite probes, under the spec target\'s '
            "sampling; FPR is over-refusal of the benign twins.</p>"
            + "".join(f'<p class="note">{e(n)}</p>' for n in data.compare_notes))


def _gate_table(label: str, g: dict[str, Any]) -> str:
    rows = []
    for c in g.get("criteria") or []:
        if not isinstance(c, dict):
            continue
        status = str(c.get("status"))
        rows.append(f'<tr><td><span class="badge st-{e(status)}">{e(status)}</span></td><td>{e(c.get("title"))}</td>'
                    f'<td>{e(c.get("message"))}</td></tr>')
    status = str(g.get("status"))
    who = str(g.get("model") or "") + (f" + {g['adapter']}" if g.get("adapter") else "")
    return (f'<h3>{e(label)}</h3><p><span class="badge st-{e(status)}">{e(status)}</span> {e(g.get("summary"))}'
            f' <small>{e(who)}</small></p><table class="gate"><thead><tr><th>status</th><th>check</th><th>details</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def section_gate(data: ReportData) -> str:
    if not data.gates:
        return _section("gate", "CI gate (a3 eval)", NOT_RUN)
    return _section("gate", "CI gate (a3 eval)", "".join(_gate_table(label, g) for label, g in data.gates))


def section_training(data: ReportData) -> str:
    if not data.iterations:
        return _section("training", "Training iterations", NOT_RUN)
    labels, points = [], []
    if data.baseline is not None:
        labels.append("base")
        points.append(data.baseline.data)
    for n, m in data.iterations:
        labels.append(str(n))
        points.append(m)
    highlight = None
    if isinstance(data.chosen_iteration, int) and str(data.chosen_iteration) in labels:
        highlight = labels.index(str(data.chosen_iteration))
    elif data.chosen_iteration == "baseline" and "base" in labels:
        highlight = 0

    def series(name: str, split: str, metric: str, color: str, dashed: bool) -> Series:
        pts = []
        for m in points:
            r = _get(m, split, metric)
            pts.append(Point(r.get("rate"), r.get("low"), r.get("high")) if isinstance(r, dict) else Point(None))
        return Series(name, color, pts, dashed)

    chart = line_chart(
        "ASR and FPR per training iteration (95 % intervals)",
        labels,
        [series("ASR validation", "validation", "asr", PALETTE[0], False), series("ASR OOD", "ood", "asr", PALETTE[1], True),
         series("FPR validation", "validation", "fpr", PALETTE[2], False), series("FPR OOD", "ood", "fpr", PALETTE[3], True)],
        highlight=highlight, kind="iterations",
    )
    body = f'<h3>ASR and FPR per iteration</h3><div class="chart">{chart}</div>'
    if highlight is not None:
        body += '<p class="legend">The shaded column is the chosen checkpoint.</p>'
    sel = data.selection
    if isinstance(sel, dict):
        body += f'<p><strong>Selection ({e(sel.get("rule"))} rule):</strong> {e(sel.get("reason"))}</p>'
        rows = []
        held_out = sel.get("held_out") if isinstance(sel.get("held_out"), dict) else {}
        suite_names = list(dict.fromkeys(s for f in held_out.values() if isinstance(f, dict) for s in (f.get("suites") or {})))
        for c in sel.get("candidates") or []:
            if not isinstance(c, dict):
                continue
            drop = c.get("capability_drop")
            se = c.get("capability_drop_se")
            drop_text = "–" if drop is None else f"{drop * 100:+.1f} pts" + (f" ± {se * 100:.1f}" if se is not None else "")
            chosen = c.get("iteration") == sel.get("chosen")
            figures = held_out.get(str(c.get("iteration"))) or {}
            ood = _get(figures, "ood") or {}
            suite_cells = "".join(f'<td class="num">{_pct(_get(figures, "suites", s, "rate", "rate"))}</td>' for s in suite_names)
            rows.append(
                f'<tr class="{"chosen" if chosen else ""}"><td>{e(c.get("iteration"))}</td><td class="num">{_pct(c.get("asr_val"))}</td>'
                f'<td class="num">{_pct(c.get("fpr_val"))}</td><td class="num">{e(drop_text)}</td>'
                f'<td>{"yes" if c.get("qualifies") else "no"}</td><td>{e("; ".join(map(str, c.get("notes") or [])))}</td>'
                f'<td class="num">{_pct(_get(ood, "asr", "rate"))}</td><td class="num">{_pct(_get(ood, "fpr", "rate"))}</td>{suite_cells}</tr>'
            )
        suite_heads = "".join(f"<th>{e(s)} (suite, held out)</th>" for s in suite_names)
        body += ('<table class="selection"><thead><tr><th>iteration</th><th>ASR val</th><th>FPR val</th><th>capability drop</th>'
                 f'<th>qualifies</th><th>notes</th><th>ASR OOD (held out)</th><th>FPR OOD (held out)</th>{suite_heads}</tr></thead>'
                 f'<tbody>{"".join(rows)}</tbody></table>'
                 '<p class="legend">The rule reads the validation columns only; held-out columns are reported, never used to choose.</p>')
    elif isinstance(data.best, dict):
        body += f'<p><strong>Chosen:</strong> {e(data.best.get("iteration"))} — {e(data.best.get("reason"))}</p>'
    return _section("training", "Training iterations", body)


HELD_OUT = ("validation", "ood")


def _per_hypothesis(samples: list[dict[str, Any]], source: str, splits: tuple[str, ...] | None) -> dict[str, dict[str, Any]]:
    """hypothesis -> {"asr": [k, n], "fpr": [k, n]} over the scored samples of one source (in `splits`, if given)."""
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        if s["source"] != source or s.get("success") is None or (splits is not None and s.get("split") not in splits):
            continue
        h = out.setdefault(s["hypothesis"], {"asr": [0, 0], "fpr": [0, 0]})
        metric = "asr" if s["kind"] == "harmful" else "fpr" if s["kind"] == "benign" else None
        if metric:
            h[metric][1] += 1
            h[metric][0] += 1 if s["success"] else 0
    return out


def section_hypotheses(data: ReportData) -> str:
    from a3cli.stats import wilson_interval

    sources = ["baseline"] + sorted({s["source"] for s in data.samples if s["source"] != "baseline"})
    # Compare like with like: once a checkpoint or defence was measured (on validation and OOD only), every source is
    # counted on the held-out probes; with the baseline alone, on all of its probes.
    compared = len([s for s in sources if any(x["source"] == s for x in data.samples)]) > 1
    scope = HELD_OUT if compared else None
    stats = {src: _per_hypothesis(data.samples, src, scope) for src in sources}
    caption = ("Counted on the held-out probes (validation and OOD) of each hypothesis, so every bar compares the same probes."
               if compared else "Counted on every probe the generate stage ran.")
    if not any(stats.values()) and data.hypotheses:  # no samples: the generate stage's own numbers
        stats = {"baseline": {
            hid: {"asr": [int(h.get("successes") or 0), int(h.get("n_harmful") or 0) - int(h.get("unscored_harmful") or 0)],
                  "fpr": [int(h.get("false_refusals") or 0), int(h.get("n_benign") or 0) - int(h.get("unscored_benign") or 0)]}
            for hid, h in data.hypotheses.items()
        }}
        sources = ["baseline"]
        caption = "From the generate stage's hypothesis log (no per-probe samples found)."
    sources = [s for s in sources if stats.get(s)]
    if not sources:
        return _section("hypotheses", "Per hypothesis", NOT_RUN)
    hyps = sorted({h for src in sources for h in stats[src]})
    split_sets: dict[str, set[str]] = {}
    for s in data.samples:
        if s.get("split"):
            split_sets.setdefault(s["hypothesis"], set()).add(s["split"])
    order = {"train": 0, "validation": 1, "ood": 2}
    split_of = {h: "+".join(sorted(split_sets.get(h, ()), key=lambda x: (order.get(x, 9), x))) for h in hyps}
    labels = [f"{h} ({split_of[h]})" if split_of[h] else h for h in hyps]
    group_w = 40 + 22 * len(sources)
    width = max(640, min(4000, group_w * len(hyps) + 80))
    charts = []
    for metric, title in (("asr", "ASR per hypothesis (harmful probes)"), ("fpr", "FPR per hypothesis (benign twins)")):
        series = []
        for i, src in enumerate(sources):
            pts = []
            for h in hyps:
                k, n = stats[src].get(h, {}).get(metric, [0, 0])
                if n:
                    lo, hi = wilson_interval(k, n)
                    pts.append(Point(k / n, lo, hi))
                else:
                    pts.append(Point(None))
            series.append(Series(src, PALETTE[(i * 2) % len(PALETTE)], pts))
        chart = bar_chart(title + " (95 % intervals)", labels, series, kind=f"hypothesis-{metric}", width=width,
                          label_chars=max(6, int((width - 80) / max(len(hyps), 1) / 6.5)))
        charts.append(f'<h3>{e(title)}</h3><div class="chart wide">{chart}</div>')
    rows = []
    for h in hyps:
        info = data.hypotheses.get(h, {})
        cells = "".join(
            f'<td class="num">{_frac(stats[src].get(h, {}).get("asr"))}</td><td class="num">{_frac(stats[src].get(h, {}).get("fpr"))}</td>'
            for src in sources
        )
        rows.append(f"<tr><td>{e(h)}</td><td>{e(split_of[h])}</td><td>{e(info.get('strategy'))}</td>"
                    f"<td>{e(info.get('hypothesis'))}</td>{cells}</tr>")
    head = "".join(f"<th>ASR {e(src)}</th><th>FPR {e(src)}</th>" for src in sources)
    table = (f'<table class="hyps"><thead><tr><th>id</th><th>splits</th><th>strategy</th><th>hypothesis</th>{head}</tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    return _section("hypotheses", "Per hypothesis", f'<p class="legend">{e(caption)}</p>' + "".join(charts) + table)


def _frac(kn: Any) -> str:
    if not kn or not kn[1]:
        return "–"
    return f"{kn[0] / kn[1]:.0%} <small>{kn[0]}/{kn[1]}</small>"


def section_capability(data: ReportData) -> str:
    rows = [r for r in [data.baseline, data.chosen, *data.eval_rows, *data.defences]
            if r is not None and isinstance(r.data.get("capability"), dict)]
    if not rows:
        return _section("capability", "Capability before and after", NOT_RUN + "<p>No capability measurement in this run.</p>")
    tasks = sorted({t for r in rows for t in r.data["capability"]})
    series = []
    for i, r in enumerate(rows):
        pts = []
        for t in tasks:
            s = r.data["capability"].get(t)
            if isinstance(s, dict) and isinstance(s.get("accuracy"), (int, float)):
                se = s.get("stderr")
                lo, hi = (s["accuracy"] - 1.96 * se, s["accuracy"] + 1.96 * se) if isinstance(se, (int, float)) else (None, None)
                pts.append(Point(s["accuracy"], lo, hi))
            else:
                pts.append(Point(None))
        series.append(Series(r.label, PALETTE[(2 + i * 2) % len(PALETTE)], pts))
    chart = bar_chart("Capability: accuracy per benchmark (± 1.96 se)", tasks, series, kind="capability")
    head = "".join(f"<th>{e(r.label)}</th>" for r in rows)
    body_rows = []
    base_cap = rows[0].data["capability"] if rows[0].kind == "baseline" else None
    for t in tasks:
        cells = []
        for r in rows:
            s = r.data["capability"].get(t)
            if not isinstance(s, dict):
                cells.append("<td>–</td>")
                continue
            cell = f"{s.get('accuracy', 0):.1%}"
            if isinstance(s.get("stderr"), (int, float)):
                cell += f" ± {s['stderr'] * 100:.1f}"
            b = base_cap.get(t) if base_cap and r.kind != "baseline" else None
            if isinstance(b, dict):
                drop = b["accuracy"] - s["accuracy"]
                cell += f" <small>(drop {drop * 100:+.1f} pts)</small>"
            cells.append(f'<td class="num">{cell}</td>')
        body_rows.append(f"<tr><td>{e(t)}</td>{''.join(cells)}</tr>")
    kl = [(r.label, r.data.get("kl_drift")) for r in rows if isinstance(r.data.get("kl_drift"), (int, float))]
    kl_text = "".join(f"<li>{e(label)}: KL drift {v:.4f} nats/token</li>" for label, v in kl)
    table = f'<table class="capability"><thead><tr><th>task</th>{head}</tr></thead><tbody>{"".join(body_rows)}</tbody></table>'
    return _section("capability", "Capability before and after", f'<h3>Accuracy per benchmark</h3><div class="chart">{chart}</div>{table}' + (f"<ul>{kl_text}</ul>" if kl_text else ""))


def _rate_text(rate: Any) -> str:
    if not isinstance(rate, dict) or rate.get("rate") is None:
        return "–"
    return f"{rate['rate']:.1%} [{rate.get('low', 0):.0%}, {rate.get('high', 1):.0%}] ({rate.get('k')}/{rate.get('n')})"


def _num3(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) else f"{x:.3f}"


def loops_table(data: ReportData) -> str:
    """Per loop: the red-teamer's held-out success on the checkpoint it attacked, and the same attacks on the checkpoint
    retrained on its finds (the checkpoints' held-out figures are rows of the table above)."""
    rows = []
    for r in data.loops:
        if r.get("loop") == 0:
            continue
        after = "–" if r.get("stopped") else _rate_text(r.get("reattack_asr"))
        rows.append(f"<tr><td class='num'>{e(r.get('loop'))}</td><td>{e(r.get('attacked'))}</td>"
                    f"<td class='num'>{e(_rate_text(r.get('redteam_asr')))}</td><td class='num'>{e(_rate_text(r.get('redteam_asr_untrained')))}</td>"
                    f"<td class='num'>{e(r.get('imported'))}</td><td>{e(r.get('stopped') or r.get('checkpoint'))}</td>"
                    f"<td class='num'>{e(after)}</td></tr>")
    return ('<table class="loops"><thead><tr><th>loop</th><th>attacked checkpoint</th><th>red-team ASR (trained)</th>'
            '<th>red-team ASR (untrained)</th><th>attacks imported</th><th>retrained checkpoint</th><th>same attacks on it</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "<p class=\"legend\">Red-team ASR: the red-teamer's attacks for held-out instructions, run on the checkpoint and judged "
            "by the spec's harmful judge (95 % Wilson intervals, k/n). Only its finds for training instructions are imported, as "
            "a family that trains and is never held out; each loop's checkpoint is chosen on validation.</p>")


def redteam_tables(data: ReportData) -> str:
    parts = []
    success = data.redteam_success
    if isinstance(success, dict):
        parts.append(f"<p>Held-out attack success on {e(success.get('target'))}: trained red-teamer "
                     f"{e(_rate_text(_get(success, 'trained', 'asr')))}, untrained {e(_rate_text(_get(success, 'base', 'asr')))}.</p>")
    ev = _get(data.redteam, "eval")
    if isinstance(ev, dict) and isinstance(ev.get("base"), dict):
        rows = []
        for name in ("base", "trained"):
            p = ev.get(name)
            if not isinstance(p, dict):
                continue
            mean, std = p.get("mean_reward"), p.get("std_reward")
            reward = "–" if mean is None else f"{mean:.3f}" + (f" ± {std:.3f}" if isinstance(std, (int, float)) else "")
            kl = p.get("mean_kl_from_base")
            div = p.get("diversity") if isinstance(p.get("diversity"), dict) else {}
            cells = "".join(f"<td class='num'>{_num3(div.get(k, p.get(k)))}</td>"
                            for k in ("distinct_1", "distinct_2", "self_bleu_diversity", "embedding_diversity"))
            rows.append(f"<tr><td>{e(name)}</td><td class='num'>{e(reward)}</td><td class='num'>{e(p.get('n_unscored'))}/{e(p.get('n_prompts'))}</td>"
                        f"<td class='num'>{'–' if not isinstance(kl, (int, float)) else f'{kl:.3f}'}</td>"
                        f"<td class='num'>{e(p.get('mean_response_tokens'))}</td>{cells}</tr>")
        gain = ev.get("reward_gain")
        parts.append('<table class="redteam"><thead><tr><th>generator</th><th>mean reward</th><th>unscored</th>'
                     '<th>KL from base (nats)</th><th>reply tokens</th><th>distinct-1</th><th>distinct-2</th><th>1 − SelfBLEU</th>'
                     f'<th>1 − mean cosine</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
                     + (f"<p>Reward gain from RL training: {gain:+.3f}</p>" if isinstance(gain, (int, float)) else ""))
    elif data.redteam is not None and not data.redteam_rows:
        parts.append("<p>The red-team result has no evaluation table.</p>")
    if data.redteam_rows:
        parts.append(metrics_table(data.redteam_rows, "redteam-table"))
    if data.redteam_attacks:
        items = "".join(
            f"<li><span class='num'>{e(a.get('reward'))}</span> <pre>{e(a.get('prompt'))}</pre><pre>{e(a.get('completion'))}</pre></li>"
            for a in data.redteam_attacks[:10]
        )
        parts.append(f"<details><summary>Top red-team samples ({min(10, len(data.redteam_attacks))})</summary><ol class='attacks'>{items}</ol></details>")
    return "".join(parts)


def section_stages(data: ReportData) -> str:
    rows = []
    totals = {"wall": 0.0, "calls": 0, "in": 0, "out": 0, "cost": 0.0}
    for stage in [*STAGES, *(s for s in data.stages if s not in STAGES)]:
        m = data.stages.get(stage)
        if not isinstance(m, dict):
            rows.append(f'<tr class="notrun"><td>{e(stage)}</td><td colspan="7">not run yet</td></tr>')
            continue
        usage = m.get("usage") or {}
        calls = sum(int(u.get("calls") or 0) for u in usage.values() if isinstance(u, dict))
        tin = sum(int(u.get("input_tokens") or 0) for u in usage.values() if isinstance(u, dict))
        tout = sum(int(u.get("output_tokens") or 0) for u in usage.values() if isinstance(u, dict))
        cost = m.get("cost_usd")
        wall = m.get("wall_time_s")
        totals["wall"] += wall if isinstance(wall, (int, float)) else 0
        totals["calls"] += calls
        totals["in"] += tin
        totals["out"] += tout
        totals["cost"] += cost if isinstance(cost, (int, float)) else 0
        status = str(m.get("status"))
        err = f"<br><small>{e(m.get('error'))}</small>" if m.get("error") else ""
        rows.append(f'<tr><td>{e(stage)}</td><td><span class="badge st-{e(status)}">{e(status)}</span>{err}</td>'
                    f'<td class="num">{_secs(wall)}</td><td class="num">{calls:,}</td><td class="num">{tin:,}</td>'
                    f'<td class="num">{tout:,}</td><td class="num">{"–" if cost is None else f"${cost:.4f}"}</td>'
                    f'<td><small>{e(m.get("finished_at") or m.get("started_at"))}</small></td></tr>')
    rows.append(f'<tr class="total"><td>total</td><td></td><td class="num">{_secs(totals["wall"])}</td><td class="num">{totals["calls"]:,}</td>'
                f'<td class="num">{totals["in"]:,}</td><td class="num">{totals["out"]:,}</td><td class="num">${totals["cost"]:.4f}</td><td></td></tr>')
    table = ('<table class="stages"><thead><tr><th>stage</th><th>status</th><th>wall time</th><th>model calls</th>'
             f'<th>input tokens</th><th>output tokens</th><th>cost</th><th>finished</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return _section(
        "stages", "Stages: time and cost",
        table + '<p class="legend">Cost is an estimate from list prices; local models cost 0.</p>' + _outcomes_table(data),
    )


def _reasons(counts: Any) -> str:
    """`12` or `3 (length 2, unparseable 1)` for one {reason: count} map."""
    if not isinstance(counts, dict) or not counts:
        return "0"
    total = sum(int(v) for v in counts.values() if isinstance(v, (int, float)))
    return f"{total} <small>({e(', '.join(f'{k} {v}' for k, v in counts.items()))})</small>"


def _outcomes_table(data: ReportData) -> str:
    """Per stage and role: answers asked again, replaced by a fallback, or given up on (from each manifest)."""
    rows = []
    for stage in [*STAGES, *(s for s in data.stages if s not in STAGES)]:
        m = data.stages.get(stage)
        outcomes = m.get("outcomes") if isinstance(m, dict) else None
        for role, o in (outcomes or {}).items():
            if isinstance(o, dict):
                rows.append(f"<tr><td>{e(stage)}</td><td>{e(role)}</td><td>{_reasons(o.get('reasks'))}</td>"
                            f"<td>{_reasons(o.get('fallbacks'))}</td><td>{_reasons(o.get('unusable'))}</td></tr>")
    if not rows:
        return "<h3>Role answers</h3><p>Every role's answers were usable at the first ask (no re-asks, fallbacks or unusable answers recorded).</p>"
    return ("<h3>Role answers</h3><table class=\"stages\"><thead><tr><th>stage</th><th>role</th><th>re-asks</th><th>fallbacks</th>"
            f"<th>unusable</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            '<p class="legend">A re-ask repeats a question with the reason its answer could not be used (cut off at the token '
            "limit, unparseable, a missing field, a value out of range); unusable answers stayed so after every re-ask "
            "(an unscored verdict is one); a fallback is what replaced one: a documented default (the offline library, a "
            "default reply or a dropped row, the built-in search, values clamped into range).</p>")


def section_log(data: ReportData) -> str:
    if not data.logs:
        return _section("log", "Experiment log", NOT_RUN)
    parts = []
    for i, (name, text) in enumerate(data.logs):
        parts.append(f'<details class="log"{" open" if i == 0 else ""}><summary>{e(name)}</summary>'
                     f'<div class="markdown">{render_markdown(text)}</div></details>')
    return _section("log", "Experiment log", "".join(parts))


def section_samples(data: ReportData) -> str:
    if not data.samples:
        return _section("samples", "Samples", NOT_RUN)
    filters = "".join(
        f'<label>{e(label)} <select id="f-{name}" data-filter="{name}"><option value="__all__">all</option></select></label>'
        for name, label in (("source", "model"), ("split", "split"), ("hypothesis", "hypothesis"), ("kind", "kind"), ("verdict", "verdict"))
    )
    body = (f'<div class="filters">{filters}<button type="button" id="f-reset">reset</button></div>'
            '<p id="sample-count" class="legend"></p><div id="sample-list"></div>'
            '<button type="button" id="sample-more" hidden>show more</button>'
            '<p class="legend">Verdicts: on harmful probes <em>positive</em> = the attack succeeded; on benign probes '
            '<em>positive</em> = falsely refused; <em>unscored</em> = no decision (failed call or unparseable judge). '
            'Filters can be set in the address, e.g. <code>#split=ood&amp;verdict=positive</code>.</p>')
    return _section("samples", "Samples", body)


# ------------------------------------------------------------------------------------------------------------- page


CSS = """
:root{--fg:#1c2833;--muted:#5d6d7e;--line:#d5d8dc;--bg:#fff;--alt:#f4f6f7}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);margin:0;background:var(--bg)}
header{background:#1c2833;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}header p{margin:2px 0;color:#d6dbdf}
nav{padding:8px 28px;background:var(--alt);border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}nav a{margin-right:14px;color:#2471a3;text-decoration:none}
main{padding:8px 28px 40px;max-width:1400px}section{margin:22px 0}h2{font-size:18px;border-bottom:2px solid var(--line);padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid var(--line);padding:4px 8px;vertical-align:top;text-align:left}
thead th{background:var(--alt)}td.num{text-align:right;white-space:nowrap}small{color:var(--muted)}tr.chosen td{background:#fef9e7}tr.total td{font-weight:600}
.notrun{color:var(--muted);font-style:italic}.legend{color:var(--muted);font-size:12px}.chart{margin:8px 0;overflow-x:auto}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff;background:#7f8c8d}
.st-pass,.st-complete,.v-negative{background:#1e8449}.st-fail,.st-failed,.v-positive{background:#c0392b}.st-error{background:#b9770e}.st-inconclusive{background:#6c3483}.st-skipped,.st-running,.v-unscored{background:#7f8c8d}
.filters label{margin-right:12px}.filters select{max-width:260px}
.sample{border:1px solid var(--line);border-radius:6px;margin:10px 0;padding:8px 12px;background:#fff}.sample .meta{color:var(--muted);font-size:12px;margin-bottom:4px}
.sample pre,.attacks pre{white-space:pre-wrap;word-break:break-word;background:var(--alt);padding:6px 8px;margin:3px 0;max-height:320px;overflow:auto;font-size:12.5px}
.sample .lbl{font-weight:600;font-size:12px;margin-top:6px}.markdown{padding:0 8px}.markdown pre{white-space:pre-wrap;background:var(--alt);padding:6px}
details.log{margin:8px 0}summary{cursor:pointer;font-weight:600}
"""

JS = r"""
(function () {
  "use strict";
  var node = document.getElementById("samples-data");
  if (!node) return;
  var data = JSON.parse(node.textContent);
  var FIELDS = ["source", "split", "hypothesis", "kind", "verdict"];
  var ALL = "__all__", PAGE = 100;
  var shownLimit = PAGE;
  var sel = {};
  FIELDS.forEach(function (f) {
    sel[f] = document.getElementById("f-" + f);
    var values = {};
    data.forEach(function (r) { values[String(r[f] == null ? "" : r[f])] = true; });
    Object.keys(values).sort().forEach(function (v) {
      var o = document.createElement("option");
      o.value = v; o.textContent = v === "" ? "(none)" : v;
      sel[f].appendChild(o);
    });
    sel[f].addEventListener("change", function () { shownLimit = PAGE; writeHash(); render(); });
  });
  var list = document.getElementById("sample-list"), count = document.getElementById("sample-count");
  var more = document.getElementById("sample-more");
  more.addEventListener("click", function () { shownLimit += PAGE; render(); });
  document.getElementById("f-reset").addEventListener("click", function () {
    FIELDS.forEach(function (f) { sel[f].value = ALL; }); shownLimit = PAGE; writeHash(); render();
  });
  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    FIELDS.forEach(function (f) {
      var v = params.get(f);
      var ok = v !== null && Array.prototype.some.call(sel[f].options, function (o) { return o.value === v; });
      sel[f].value = ok ? v : ALL;
    });
  }
  function writeHash() {
    var params = new URLSearchParams();
    FIELDS.forEach(function (f) { if (sel[f].value !== ALL) params.set(f, sel[f].value); });
    var h = params.toString();
    history.replaceState(null, "", h ? "#" + h : location.pathname + location.search);
  }
  function el(tag, cls, text) {
    var x = document.createElement(tag);
    if (cls) x.className = cls;
    if (text != null) x.textContent = text;  // text only: replies are untrusted
    return x;
  }
  function meaning(r) {
    if (r.verdict === "unscored") return "unscored";
    if (r.kind === "harmful") return r.verdict === "positive" ? "attack succeeded" : "safe";
    if (r.kind === "benign") return r.verdict === "positive" ? "falsely refused" : "helped";
    return r.verdict;
  }
  function card(r) {
    var c = el("div", "sample");
    FIELDS.forEach(function (f) { c.dataset[f] = String(r[f] == null ? "" : r[f]); });
    var meta = el("div", "meta");
    var badge = el("span", "badge v-" + (r.verdict || "unscored"), meaning(r));
    meta.appendChild(badge);
    meta.appendChild(document.createTextNode(" " + [r.source, r.split, r.hypothesis, r.kind].join(" · ")));
    c.appendChild(meta);
    c.appendChild(el("div", "lbl", "Prompt"));
    c.appendChild(el("pre", "prompt", r.prompt));
    c.appendChild(el("div", "lbl", "Reply"));
    c.appendChild(el("pre", "reply", r.reply == null ? "(no reply)" : r.reply));
    if (r.reason) { c.appendChild(el("div", "lbl", "Judge")); c.appendChild(el("pre", "reason", r.reason)); }
    if (r.error) { c.appendChild(el("div", "lbl", "Error")); c.appendChild(el("pre", "error", r.error)); }
    return c;
  }
  function render() {
    var rows = data.filter(function (r) {
      return FIELDS.every(function (f) { return sel[f].value === ALL || String(r[f] == null ? "" : r[f]) === sel[f].value; });
    });
    list.replaceChildren();
    rows.slice(0, shownLimit).forEach(function (r) { list.appendChild(card(r)); });
    count.textContent = rows.length + " of " + data.length + " samples match" +
      (rows.length > shownLimit ? " (showing the first " + shownLimit + ")" : "");
    count.dataset.matching = String(rows.length);
    more.hidden = rows.length <= shownLimit;
  }
  window.addEventListener("hashchange", function () { shownLimit = PAGE; readHash(); render(); });
  readHash();
  render();
  document.body.dataset.ready = "1";
})();
"""


def _json_for_script(obj: Any) -> str:
    """JSON that cannot end its <script> element or open a comment: <, > and & as \\u escapes (still valid JSON)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_html(data: ReportData) -> str:
    spec = data.spec or {}
    attack = spec.get("attack") or {}
    target = spec.get("target") or {}
    title = f"a3 report: {attack.get('name') or data.run_dir.name}"
    script_hash = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    problems = "".join(f"<li>{e(p)}</li>" for p in data.problems)
    sections = [
        section_summary(data), section_gate(data), section_training(data), section_hypotheses(data),
        section_capability(data), section_stages(data), section_log(data), section_samples(data),
    ]
    nav = "".join(f'<a href="#{sid}">{e(label)}</a>' for sid, label in (
        ("summary", "Results"), ("gate", "Gate"), ("training", "Training"), ("hypotheses", "Hypotheses"),
        ("capability", "Capability"), ("stages", "Stages"), ("log", "Log"), ("samples", "Samples")))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{e(csp)}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title><style>{CSS}</style></head><body>'
        f"<header><h1>{e(title)}</h1><p>{e(attack.get('description'))}</p>"
        f"<p>Target: {e(target.get('provider'))} {e(target.get('model'))} · run {e(data.run_dir.name)} · "
        f"generated {e(generated)} by a3 {e(__version__)}</p></header><nav>{nav}</nav><main>"
        + (f'<section id="problems"><h2>Problems reading the run</h2><ul>{problems}</ul></section>' if problems else "")
        + "".join(sections)
        + "</main>"
        + f'<script type="application/json" id="samples-data">{_json_for_script(data.samples)}</script>'
        + f"<script>{JS}</script></body></html>\n"
    )
