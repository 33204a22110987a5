"""Text conditioning: CLIP tokenizer and prompt encoding for the text-to-video mode.

The released CLIP tokenizers (49,408 BPE tokens) come with a parent pipeline folder. With no network, a
model built from scratch (the `tiny` preset) uses a real `CLIPTokenizer` over a byte-level vocabulary: the
256 byte symbols, each also as an end-of-word symbol, plus the two specials, and no merges. Every string
tokenizes (one id per UTF-8 byte), so captions of any language work; it is simply a vocabulary with no
learned merges.
"""

from __future__ import annotations

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from svd_core.model.config import TEXT_MAX_LENGTH

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable unicode mapping (the alphabet of byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codepoints = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in codepoints:
            codepoints[b] = 256 + extra
            extra += 1
    return [chr(codepoints[b]) for b in range(256)]


def byte_level_vocab() -> dict[str, int]:
    """514 entries: 256 byte symbols, the same with `</w>`, then bos (512) and eos (513), as CLIP orders them."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}


def build_byte_level_tokenizer(max_length: int = TEXT_MAX_LENGTH) -> CLIPTokenizer:
    """A `CLIPTokenizer` that needs no downloaded files (see the module docstring)."""
    return CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=max_length)


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids padded/truncated to the CLIP context (77), shape (B, 77), int64."""
    out = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return out.input_ids.long()


@torch.no_grad()
def encode_token_ids(text_encoder: CLIPTextModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Cross-attention context: the text tower's last hidden states, shape (B, 77, hidden).

    SD 2.1 keeps 23 of OpenCLIP-H's 24 layers in its `text_encoder`, so "last" here is the penultimate
    layer of the original model, as SD 2.1 conditions on.
    """
    device = next(text_encoder.parameters()).device
    return text_encoder(input_ids.to(device)).last_hidden_state


def encode_prompts(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: list[str]) -> torch.Tensor:
    return encode_token_ids(text_encoder, tokenize(tokenizer, prompts))
