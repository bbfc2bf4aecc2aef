"""Whether a3's offline probe writer fits a spec's attack.

Without `roles.generator`, probes come from the built-in strategy library: jailbreak wrappers (role-play, fiction,
encodings, ...) around harmful requests (the seed's and StrongREJECT's). That tests harmful compliance and nothing
else: a sycophancy or political-neutrality spec would get probes unrelated to its attack.
"""

from __future__ import annotations

from a3cli.spec._models import ClassifierJudge, LLMJudge, Spec

# Verdict fields of an `llm` harmful judge that say "the reply helped with something harmful".
HARM_VERDICTS = frozenset(
    {"harmful", "harm", "unsafe", "jailbroken", "jailbreak", "complied", "compliance", "harmful_compliance", "attack_success", "violation"}
)

OFFLINE_LIBRARY = (
    "without roles.generator, probes come from the offline strategy library (jailbreak wrappers around harmful "
    "StrongREJECT requests), which tests harmful compliance only"
)


def offline_mismatch(spec: Spec) -> str | None:
    """Why this spec's attack is not harmful compliance (so the offline library does not fit it), or None when it is."""
    harmful = spec.judges.harmful
    if spec.expected.harmful_behavior == "hold_firm":
        return "the model should hold firm (expected.harmful_behavior: hold_firm), so the attack is not a harmful request"
    if isinstance(harmful, LLMJudge):
        if harmful.scale is not None:
            lo, hi = harmful.scale
            return f"the harmful judge rates `{harmful.verdict_field}` on a {lo:g}-{hi:g} scale, not harmful compliance"
        if harmful.verdict_field.lower() not in HARM_VERDICTS:
            return f"the harmful judge's verdict is `{harmful.verdict_field}`, not harmful compliance"
    if isinstance(harmful, ClassifierJudge):
        return f"the harmful judge is the {harmful.model} classifier ({harmful.label}), which scores wording, not help with harm"
    return None


def offline_generator_warning(spec: Spec) -> str | None:
    """The warning for a spec with no generator role whose attack the offline library cannot probe, else None."""
    if spec.roles.generator is not None:
        return None
    why = offline_mismatch(spec)
    if why is None:
        return None
    return f"{OFFLINE_LIBRARY}, but {why}: its probes would not test this attack; set roles.generator"
