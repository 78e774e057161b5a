"""A tiny randomly initialised text-generation model, saved as a transformers folder.

A GPT-2 of one layer and 32 dimensions, with a byte-level BPE tokenizer trained here on
a few sentences and a chat template: the same files ``save_pretrained`` writes for a real
model, so ``local/<folder>`` loads and runs it through the real code, offline, in well
under a second. What it writes is noise, but deterministic noise for a seed.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Organic cotton tote bag in navy, roomy and strong.",
    "A cat asleep on a velvet sofa, warm window light, cinematic.",
    "Write one caption in a playful tone. Write one prompt.",
    "Product text: handmade ceramic mug with a speckled glaze.",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def save_tiny_text_model(folder: Path, seed: int = 0, *, chat_template: bool = True) -> Path:
    """Write the model and its tokenizer to ``folder``; returns it."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, special_tokens=["<eos>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trained, eos_token="<eos>")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
