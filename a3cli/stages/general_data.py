"""General-capability data mixed into training (A3's "DOLCI" mix): general instructions answered by the target itself,
so fine-tuning keeps its own style instead of pulling it towards another model's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from a3cli._io import iter_jsonl
from a3cli._paths import builtin_data
from a3cli.errors import InfrastructureError, SpecError
from a3cli.llm import Engine, Request
from a3cli.spec import Message, Spec, role_max_tokens

BUILTIN_GENERAL_PROMPTS = builtin_data("general_prompts.jsonl")

# Self-distilled replies are longer than probe replies (which only need enough text to judge): a reply cut short would
# teach the model to stop mid-sentence.
GENERAL_REPLY_TOKENS = 128


def general_source_path(spec: Spec, spec_dir: Path | None = None) -> Path:
    source = spec.training.general_data.source
    if source == "builtin":
        return BUILTIN_GENERAL_PROMPTS
    path = Path(source).expanduser()
    return path if path.is_absolute() or spec_dir is None else spec_dir / path


def load_general_conversations(path: Path, limit: int) -> list[list[Message]]:
    """Conversations ending on a user turn. Rows are `{"prompt": ...}` or `{"messages": [...]}` (a trailing assistant
    turn is dropped: the target writes its own reply)."""
    if not path.exists():
        raise SpecError(f"general data file not found: {path}")
    out: list[list[Message]] = []
    for number, row in enumerate(iter_jsonl(path), 1):
        if len(out) >= limit:
            break
        if isinstance(row, dict) and isinstance(row.get("prompt"), str):
            out.append([Message(role="user", content=row["prompt"])])
        elif isinstance(row, dict) and isinstance(row.get("messages"), list):
            messages = [Message.model_validate(m) for m in row["messages"]]
            while messages and messages[-1].role == "assistant":
                messages.pop()
            if messages and messages[-1].role == "user":
                out.append(messages)
        else:
            raise SpecError(f"{path}:{number}: a general-data row needs `prompt` or `messages`")
    return out


def build_general_examples(spec: Spec, engine: Engine, conversations: list[list[Message]]) -> tuple[list[dict[str, Any]], int]:
    """Chat examples (messages + the target's reply). Returns (rows, failed calls); failed calls are dropped, not faked."""
    limit = max(role_max_tokens(spec.target.generate, "target"), GENERAL_REPLY_TOKENS)
    config = spec.target.generate.model_copy(update={"max_tokens": limit})
    requests = [Request(model=spec.target, messages=conv, config=config, role="target") for conv in conversations]
    responses = engine.generate_sync(requests, progress="general data: target replies")
    rows, failed = [], 0
    first_problem = ""
    for conv, response in zip(conversations, responses):
        if not response.ok or not (response.text or "").strip():
            failed += 1
            first_problem = first_problem or (
                f"{response.error.kind}: {response.error.message}" if response.error is not None else "an empty reply"
            )
            continue
        messages = [m.model_dump() for m in conv] + [{"role": "assistant", "content": response.text.strip()}]
        rows.append({"messages": messages, "source": "general"})
    if conversations and not rows:
        # Training on the task data alone would erode capability with nothing in the run saying so.
        raise InfrastructureError(
            f"every one of the {len(conversations)} general-data replies from the target ({spec.target.model}) failed "
            f"(first: {first_problem}); training needs them to keep general capability, so it stops here"
        )
    return rows, failed
