"""A tiny random-weight Llama sized to a test tokenizer (tests/fakes/tiny_tokenizer.py), for real transformers code
paths without downloads."""

from __future__ import annotations

from typing import Any


def tiny_llama(tok: Any, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,  # None for a tokenizer without padding, as LlamaConfig's default
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()
