"""Randomly initialised diffusers pipelines, saved as model folders.

``save_tiny_stable_diffusion``: Stable Diffusion's real architecture (UNet, VAE, CLIP
text encoder, tokenizer, scheduler) at toy sizes, built in code as diffusers' own tests
do: no hub, no download, and the real pipeline code runs on the CPU in milliseconds.

``save_random_sd_turbo``: SD-Turbo's architecture at full size (about 1.3 billion
random weights), for benchmarks: it costs what the real model costs to run.
"""

from __future__ import annotations

import json
from pathlib import Path


def save_tiny_stable_diffusion(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random Stable Diffusion pipeline to ``folder``; returns it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=60,
            max_position_embeddings=77,
        )
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(folder.parent / f".{folder.name}-tokenizer", CLIPTokenizer),
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return folder


def save_random_sd_turbo(folder: Path, seed: int = 0) -> Path:
    """SD-Turbo's architecture (Stable Diffusion 2.1: UNet, OpenCLIP ViT-H text encoder,
    VAE) with random weights, saved in half precision; returns ``folder``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024,
        use_linear_projection=True,
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=("UpBlock2D", *["CrossAttnUpBlock2D"] * 3),
    )
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=23,
            projection_dim=1024,
            hidden_act="gelu",
            vocab_size=49408,
            max_position_embeddings=77,
        )
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(folder.parent / f".{folder.name}-tokenizer", CLIPTokenizer),
        scheduler=EulerDiscreteScheduler(steps_offset=1, timestep_spacing="trailing"),  # SD-Turbo's
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.to(torch.float16).save_pretrained(folder)
    return folder


def _tokenizer(directory: Path, tokenizer_class: type) -> object:
    """A character-level CLIP tokenizer: letters a–z, start, end and padding tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for code in range(ord("a"), ord("z") + 1):
        vocab[chr(code)] = len(vocab)
        vocab[chr(code) + "</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return tokenizer_class(
        str(directory / "vocab.json"),
        str(directory / "merges.txt"),
        pad_token="!",
        model_max_length=77,
    )
