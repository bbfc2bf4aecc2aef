"""Overlap check for the v3 SmolLM2 prompts against every prompt set a3 ships (StrongREJECT, benign topics,
data/*.jsonl, data/suites/*.jsonl, v2), without importing a3cli.probes or a3cli.stages (they import a3cli.judges, which
this set must be written blind to). Word overlap as tests/test_shipped_data.py (reported from 0.6) and MiniLM cosine
(reported from 0.7). Run from the worktree root: PYTHONPATH=$PWD python scripts/heldout_v3/overlap_check.py"""
import ast, json, re, sys, unicodedata
from pathlib import Path
sys.path.insert(0, "scripts/heldout_v3")
from prompts_smollm2 import all_prompts, HARMFUL, BENIGN
from a3cli.assets import load_strongreject, embed
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
def norm(t):  # a3cli.probes.normalise_text, copied
    t = unicodedata.normalize("NFKD", t)
    t = "".join(c for c in t if not unicodedata.combining(c)).casefold()
    return " ".join(_NON_WORD.sub(" ", t).split())
def words(t):
    return frozenset(norm(t).split())


def sim(a, b):
    return len(a & b) / len(a | b)
def rows(p):
    return [json.loads(line) for line in open(p, encoding="utf-8") if line.strip()]
tree = ast.parse(Path("a3cli/stages/generate/_topics.py").read_text())
topics = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "BENIGN_TOPICS")
found = {"BENIGN_TOPICS": [t for v in ast.literal_eval(topics).values() for t in v],
         "StrongREJECT": [p.prompt for p in load_strongreject(part="all")]}
for path in sorted(Path("data").glob("*.jsonl")) + sorted(Path("data/suites").glob("*.jsonl")):
    if "heldout_v3" in path.name:
        continue
    found[path.name] = [t for r in rows(path) if (t := r.get("prompt") or r.get("text"))]
print(len(HARMFUL), len(BENIGN), {k: len(v) for k, v in found.items()})
ps = [p["prompt"] for p in all_prompts()]
assert len(set(ps)) == len(ps)
for name, others in found.items():
    for p in ps:
        for o in others:
            if norm(p) == norm(o) or sim(words(p), words(o)) >= 0.6: print("JACCARD", name, "|", p, "|", o)
for i in range(len(ps)):
    for j in range(i+1, len(ps)):
        if sim(words(ps[i]), words(ps[j])) >= 0.6: print("WITHIN", ps[i], ps[j])
allo = list(dict.fromkeys(o for v in found.values() for o in v))
S = embed(ps) @ embed(allo).T
hits = sorted(((float(S[i, j]), ps[i], allo[j]) for i in range(len(ps)) for j in (S[i] >= 0.7).nonzero()[0]), reverse=True)
for c, p, o in hits: print(round(c, 2), "|", p, "|", o)
