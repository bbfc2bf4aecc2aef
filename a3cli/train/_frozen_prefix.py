"""The frozen bottom of the model, run once per example instead of once per step.

With LoRA on the last N decoder layers only (`TrainHyperparams.lora_layers`), the layers below never change while
training: the hidden states they hand to the first trained layer are the same in every epoch. They are computed once,
without gradients, and each step runs only the top layers (forward and backward) from them. On a 30-layer model with
LoRA on the last 8, three epochs cost about a third of the full forward-and-backward passes.

Exactness: the trainer batches right-padded rows without an attention mask (a real token only attends to earlier,
real positions), and positions start at 0 in every row, so each real position's hidden state is what the whole model
computes for it, whatever the batch; the top layers then see the same inputs as they would in the full forward.
The bottom layers run in eval mode (no dropout): they hold no trained weights, and a frozen layer's dropout would
only add noise that changes every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def decoder_of(model: Any) -> Any | None:
    """The decoder stack (embeddings, `layers`, final `norm`) of a Llama-style causal LM, or None for another shape."""
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if decoder is None or layers is None or not hasattr(decoder, "norm") or not hasattr(decoder, "embed_tokens"):
        return None
    return decoder


class FrozenPrefix:
    def __init__(self, decoder: Any, split: int, states: list[Any]) -> None:
        self.decoder = decoder
        self.split = split  # layers [0, split) are frozen and cached; [split, n) are trained
        self.states = states  # per example: [length, hidden] float tensor on the training device

    @classmethod
    def compute(
        cls, decoder: Any, split: int, examples: Sequence[Any], pad_id: int, device: Any, *, batch_size: int = 16,
        autocast: Any = None,
    ) -> FrozenPrefix:
        """Run layers [0, split) over every example (length-sorted batches, right-padded, no mask) and keep each
        example's hidden states at the input of layer `split`."""
        import torch

        layers, norm = decoder.layers, decoder.norm
        was_training = decoder.training
        states: list[Any] = [None] * len(examples)
        order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
        try:
            decoder.layers = torch.nn.ModuleList(list(layers)[:split])
            decoder.norm = torch.nn.Identity()  # the output wanted is the last frozen layer's, before any norm
            decoder.eval()
            with torch.no_grad(), (autocast if autocast is not None else _null()):
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    width = max(len(examples[i]) for i in rows)
                    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                    for r, i in enumerate(rows):
                        ids[r, : len(examples[i])] = torch.tensor(examples[i].input_ids)
                    out = decoder(input_ids=ids.to(device), use_cache=False).last_hidden_state
                    for r, i in enumerate(rows):
                        states[i] = out[r, : len(examples[i])].detach().clone()
        finally:
            decoder.layers, decoder.norm = layers, norm
            decoder.train(was_training)
        return cls(decoder, split, states)

    def batch(self, indices: Sequence[int], width: int) -> Any:
        """The cached states of `indices`, right-padded with zeros to `width` (padding is never attended to)."""
        import torch

        first = self.states[indices[0]]
        out = torch.zeros((len(indices), width, first.shape[-1]), dtype=first.dtype, device=first.device)
        for r, i in enumerate(indices):
            out[r, : self.states[i].shape[0]] = self.states[i]
        return out

    @contextmanager
    def top_only(self) -> Iterator[None]:
        """While active, the model runs layers [split, n) only, from `inputs_embeds` = the cached states."""
        import torch

        layers = self.decoder.layers
        self.decoder.layers = torch.nn.ModuleList(list(layers)[self.split :])
        try:
            yield
        finally:
            self.decoder.layers = layers

    @property
    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.states)


@contextmanager
def _null() -> Iterator[None]:
    yield
