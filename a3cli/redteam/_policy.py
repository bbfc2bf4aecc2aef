"""The red-team policy: a causal LM with a LoRA adapter and a scalar value head.

The reference policy for the KL penalty is the same base model with the adapter switched off
(`peft_model.disable_adapter()`), so the weights are held once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from a3cli.errors import InfrastructureError, UsageError

VALUE_HEAD_FILE = "value_head.safetensors"
POLICY_META_FILE = "policy.json"


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # 0: rollout and update log-probs must agree exactly
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    # Adapt only the last N transformer blocks (None: all). Backpropagation then stops at the first adapted block,
    # which is most of the update's cost on a CPU.
    last_layers: int | None = Field(None, ge=1)


@dataclass
class Rollout:
    """One batch of sampled responses. Prompts are left-padded, responses right-padded after the first EOS."""

    prompt_ids: torch.Tensor  # (B, P)
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R), 1 up to and including the first EOS
    completions: list[str]

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)


def resolve_model_path(model_path: str | os.PathLike[str]) -> Path:
    """A local folder for `model_path`: a folder, a `.gguf` file or `pypi:<package>/<file>` (de-quantised once into
    the a3 cache), or a Hub id (downloaded, or found in the HF cache when offline). See a3cli.assets."""
    from a3cli.assets import resolve_local_model

    return resolve_local_model(os.fspath(model_path))


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_causal_lm(model_path: str | os.PathLike[str], *, device: str | torch.device = "auto", load_in_4bit: bool = False):
    """Load (model, tokenizer) ready for batched left-padded generation. fp32 on CPU, bf16 on GPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from a3cli.assets import fix_chatml_eos, prepare_tokenizer

    device = pick_device(device) if isinstance(device, str) else device
    source = resolve_model_path(model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if load_in_4bit:
        from a3cli.preflight import check_4bit

        check_4bit("redteam.load_in_4bit")
        if device.type != "cuda":
            raise UsageError(f"redteam.load_in_4bit: 4-bit loading runs on a CUDA GPU, but the policy's device is {device.type}")
        from a3cli.train._load import bnb_4bit_config  # the one QLoRA config (NF4, double quantisation)

        quant = bnb_4bit_config(torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(
            source, quantization_config=quant, device_map={"": device.index or 0}, dtype=torch.bfloat16
        )
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device)
    fix_chatml_eos(tokenizer, model)  # ChatML models end a turn with <|im_end|>
    prepare_tokenizer(tokenizer, model)
    model.eval()
    return model, tokenizer


def lora_config(settings: LoraSettings, model=None):
    """peft LoraConfig for `settings`; `model` is needed for `last_layers` (to count the blocks)."""
    from peft import LoraConfig

    layers, targets = None, settings.target_modules
    if settings.last_layers is not None:
        if model is None:
            raise ValueError("last_layers needs the model to count its layers")
        n = model.config.get_text_config().num_hidden_layers
        layers = list(range(max(0, n - settings.last_layers), n))
        if targets == "all-linear":  # peft takes a layer subset only with named modules
            targets = sorted(
                {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and ".layers." in name}
            )
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )


def format_prompts(tokenizer, prompts: Sequence[str], chat_template: bool) -> list[str]:
    """Prompts as the model sees them: raw text to continue, or a user turn of the chat template."""
    if not chat_template:
        return list(prompts)
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError("chat_template is on but the tokenizer has no chat template")
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in prompts]


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a generation: the tokenizer's EOS and whatever the generation config lists."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Sequence):
            ids.update(int(v) for v in value)
    if not ids:
        raise UsageError("the model defines no EOS token")
    return sorted(ids)


class Policy(nn.Module):
    """LoRA-adapted causal LM + value head. `reference()` switches to the frozen base policy."""

    def __init__(self, lm, tokenizer, lora: LoraSettings | None = None, *, chat_template: bool = False, seed: int | None = None):
        """Wrap `lm` with a fresh LoRA adapter (or take a PeftModel as is). `seed` makes the adapter's random
        init (LoRA A) reproducible without touching the global RNG."""
        super().__init__()
        from peft import PeftModel, get_peft_model

        if isinstance(lm, PeftModel):
            self.lm = lm
        else:
            lora = lora or LoraSettings()
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(seed)
                self.lm = get_peft_model(lm, lora_config(lora, lm))
        self.lora = lora
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        base = self.lm.get_base_model()
        # Held in a tuple so nn.Module does not register the shared sub-modules a second time.
        self._parts = (base.get_decoder(), base.get_output_embeddings())
        hidden = base.config.get_text_config().hidden_size
        device = self._parts[1].weight.device
        # Zero init: the first value estimates are 0 rather than noise with the hidden state's scale.
        self.value_head = nn.Linear(hidden, 1, dtype=torch.float32, device=device)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.eos_ids = eos_token_ids(base, tokenizer)
        self.lm.eval()  # dropout off throughout: PPO ratios must be exactly 1 before the first update

    @property
    def device(self) -> torch.device:
        return self._parts[1].weight.device

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """The base model without the adapter: the KL reference and the 'before' policy of the evaluation."""
        with self.lm.disable_adapter():
            yield

    # --- prompts and sampling -------------------------------------------------------------------

    def format_prompts(self, prompts: Sequence[str]) -> list[str]:
        return format_prompts(self.tokenizer, prompts, self.chat_template)

    def encode_prompts(self, prompts: Sequence[str], max_prompt_tokens: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"
        # A chat template already carries its own special tokens.
        enc = self.tokenizer(
            self.format_prompts(prompts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_prompt_tokens,
            add_special_tokens=not self.chat_template,
        )
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        greedy: bool = False,
    ) -> Rollout:
        """Sample one response per prompt with the global torch RNG (seeded and checkpointed by the trainer)."""
        from transformers import GenerationConfig

        prompt_ids, prompt_mask = self.encode_prompts(prompts)
        config = GenerationConfig(
            do_sample=not greedy,
            temperature=temperature if not greedy else None,
            top_k=top_k if (top_k and not greedy) else None,
            top_p=top_p if not greedy else None,
            max_new_tokens=max_new_tokens,
            num_beams=1,
            repetition_penalty=1.0,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
            use_cache=True,
        )
        out = self.lm.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config)
        response = out[:, prompt_ids.shape[1] :]
        if response.shape[1] == 0:
            raise InfrastructureError("the policy generated no tokens")
        response_ids, response_mask = _cut_after_eos(response, self.eos_ids, self.tokenizer.pad_token_id)
        completions = self.decode(response_ids, response_mask)
        return Rollout(prompt_ids, prompt_mask, response_ids, response_mask, completions)

    def decode(self, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
        texts = []
        for ids, mask in zip(response_ids.tolist(), response_mask.tolist(), strict=True):
            ids = [i for i, m in zip(ids, mask, strict=True) if m and i not in self.eos_ids]
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
        return texts

    # --- scoring --------------------------------------------------------------------------------

    def forward(self, rollout: Rollout, *, temperature: float = 1.0, with_values: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits over the response positions (B, R, V), values (B, R) or None).

        Position t's logits predict response token t; its value is the state before emitting that token.
        Logits are divided by `temperature` so log-probs match the distribution the tokens were sampled from.
        """
        input_ids, attention_mask = rollout.input_ids, rollout.attention_mask
        # Same position ids as `generate` builds for left-padded prompts.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        decoder, lm_head = self._parts
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).last_hidden_state
        P, R = rollout.prompt_ids.shape[1], rollout.response_ids.shape[1]
        h = hidden[:, P - 1 : P + R - 1]
        logits = lm_head(h).float() / temperature
        values = self.value_head(h.float()).squeeze(-1) if with_values else None
        return logits, values

    # --- persistence ----------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Adapter (peft format, loadable with PeftModel.from_pretrained) + value head. Atomic: temp folder, rename."""
        from safetensors.torch import save_file

        folder = Path(folder)
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.lm.save_pretrained(tmp / "adapter")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}, tmp / VALUE_HEAD_FILE)
        meta = {"chat_template": self.chat_template, "lora": self.lora.model_dump() if self.lora else None}
        (tmp / POLICY_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, folder)
        return folder

    def load(self, folder: str | os.PathLike[str]) -> None:
        """Load adapter weights and value head saved by `save` into this policy (same base, same LoRA settings)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = Path(folder)
        adapter_file = folder / "adapter" / "adapter_model.safetensors"
        if not adapter_file.exists():
            raise InfrastructureError(f"{folder} holds no adapter (missing {adapter_file.name})")
        result = set_peft_model_state_dict(self.lm, load_file(adapter_file, device=str(self.device)))
        if getattr(result, "unexpected_keys", None):
            raise InfrastructureError(f"the adapter in {folder} does not fit this model: {result.unexpected_keys[:3]}")
        self.value_head.load_state_dict(load_file(folder / VALUE_HEAD_FILE, device=str(self.device)))


def _cut_after_eos(response: torch.Tensor, eos_ids: Sequence[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask = 1 up to and including the first EOS; tokens after it become padding."""
    is_eos = torch.zeros_like(response, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= response == e
    # number of EOS strictly before each position; valid while it is 0
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    mask = (before == 0).long()
    return response.masked_fill(mask == 0, pad_id), mask


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished temp folder into place; the old copy disappears only after the new one is there."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
