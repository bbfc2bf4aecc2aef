"""The training core of `a3 train`: examples and tokenisation, LoRA and full fine-tuning, hyperparameter search,
checkpoint selection."""

from a3cli.train._examples import (
    ChatMessage,
    SFTExample,
    TokenizationError,
    TokenizedExample,
    tokenize_example,
    tokenize_examples,
)
from a3cli.train._full import FullMethod, memory_estimate, train_checkpoint, train_full
from a3cli.train._hyper import MemoryEstimate, TrainHyperparams, TrainResult
from a3cli.train._load import load_model_and_tokenizer
from a3cli.train._sampling import draw_epoch, epoch_size, group_by_length, sampling_probabilities
from a3cli.train._search import ClampResult, Proposal, SearchSpace, Trial, clamp_choice, initial_arms, propose_next
from a3cli.train._selection import CandidateRow, IterationResult, Selection, select_checkpoint
from a3cli.train._sft import (
    attach_lora,
    cpu_has_fast_bf16,
    lora_config,
    merge_adapter,
    read_train_result,
    resolve_precision,
    train_lora,
)
from a3cli.train._tiny import tiny_chat_model, tiny_chat_tokenizer

__all__ = [
    "CandidateRow",
    "ChatMessage",
    "ClampResult",
    "FullMethod",
    "IterationResult",
    "MemoryEstimate",
    "Proposal",
    "SFTExample",
    "SearchSpace",
    "Selection",
    "TokenizationError",
    "TokenizedExample",
    "TrainHyperparams",
    "TrainResult",
    "Trial",
    "attach_lora",
    "clamp_choice",
    "cpu_has_fast_bf16",
    "draw_epoch",
    "epoch_size",
    "group_by_length",
    "initial_arms",
    "load_model_and_tokenizer",
    "lora_config",
    "memory_estimate",
    "merge_adapter",
    "propose_next",
    "read_train_result",
    "resolve_precision",
    "sampling_probabilities",
    "select_checkpoint",
    "tiny_chat_model",
    "tiny_chat_tokenizer",
    "tokenize_example",
    "tokenize_examples",
    "train_checkpoint",
    "train_full",
    "train_lora",
]
