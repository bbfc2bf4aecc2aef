"""The gate as JUnit XML, the test-report format GitHub (via report actions) and GitLab (`artifacts:reports:junit`) read.

One testcase per criterion: `<failure>` for a failed check (and for an inconclusive one that fails the gate: under
`gate.strict`, or with its point estimate beyond the limit), `<error>` for an infrastructure error, `<skipped>` for a
check that was not run; an inconclusive check that does not fail the gate passes with its sentence in `<system-out>`. GitLab shows the element's text, not its `message` attribute, so the sentence goes in both.
GitLab keys testcases on classname + name, so every testcase carries a classname.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from a3cli.evaluate._gate import Criterion, GateResult

_ELEMENT = {"fail": "failure", "error": "error", "skipped": "skipped"}


def _clean(text: str) -> str:
    # XML 1.0 cannot carry most control characters, even escaped; model text could contain them.
    return "".join(
        ch for ch in text
        if ch in "\t\n\r" or (0x20 <= ord(ch) < 0xD800) or (0xE000 <= ord(ch) <= 0xFFFD) or ord(ch) >= 0x10000
    )


def _tag(c: Criterion, strict: bool) -> str | None:
    if c.status == "inconclusive":
        return "failure" if c.fails_gate(strict) else None
    return _ELEMENT.get(c.status)


def junit_xml(gate: GateResult, *, suite: str = "a3 gate", classname: str = "a3.gate", time_s: float = 0.0) -> str:
    counts = gate.counts()
    tags = [_tag(c, gate.gate.strict) for c in gate.criteria]
    attrs = {
        "name": suite,
        "tests": str(len(gate.criteria)),
        "failures": str(tags.count("failure")),
        "errors": str(counts["error"]),
        "skipped": str(counts["skipped"]),
        "time": f"{time_s:.3f}",
    }
    root = ET.Element("testsuites", attrs)
    ts = ET.SubElement(root, "testsuite", {**attrs, "timestamp": datetime.now(UTC).isoformat(timespec="seconds")})
    props = ET.SubElement(ts, "properties")
    for name, value in (("model", gate.model), ("adapter", gate.adapter), ("baseline", gate.baseline_source),
                        ("status", gate.status)):
        if value is not None:
            ET.SubElement(props, "property", {"name": name, "value": _clean(str(value))})
    for c, tag in zip(gate.criteria, tags):
        case = ET.SubElement(ts, "testcase", {"classname": classname, "name": _clean(f"{c.name}: {c.title}"), "time": "0"})
        if tag == "skipped":
            ET.SubElement(case, "skipped", {"message": _clean(c.message)})
        elif tag is not None:
            el = ET.SubElement(case, tag, {"message": _clean(c.message), "type": "infrastructure" if tag == "error" else "gate"})
            lines = [c.message]
            if c.measured is not None:
                lines.append(f"measured: {c.measured:.6g}")
            if c.threshold is not None:
                lines.append(f"threshold: {c.threshold:.6g}")
            if c.baseline is not None:
                lines.append(f"baseline: {c.baseline:.6g}")
            if c.stderr is not None:
                lines.append(f"stderr: {c.stderr:.6g}")
            if c.low is not None and c.high is not None:
                lines.append(f"95% interval: [{c.low:.6g}, {c.high:.6g}]")
            el.text = _clean("\n".join(lines))
        else:
            ET.SubElement(case, "system-out").text = _clean(c.message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
