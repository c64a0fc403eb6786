"""Vision input for encoder–decoder models: a small patch-embedding image encoder feeding the text encoder.

"Return of the Encoder" (arXiv 2501.16273, Sec. 5) pairs the encoder–decoder with a vision tower whose
patch features, projected to the model width, enter the encoder's input sequence in front of the text
(LLaVA-style). Here the tower is a ViT (Dosovitskiy et al. 2021): non-overlapping patches embedded by a
strided convolution, learned position embeddings, pre-norm transformer layers; a two-layer MLP projector
maps its features to the text model's hidden size. ``VisionEncDec`` builds ``inputs_embeds =
[projected patches; text embeddings]`` with the matching attention mask and hands them to any transformers
encoder–decoder (``encdec``, T5), so training (``slmkit.train.losses`` passes ``pixel_values`` through) and
``generate`` (with the KV caches) work unchanged.

Reads/writes: ``save_vision_model`` writes the text model in the ``save_pretrained`` layout plus
``vision.safetensors`` and ``vision_config.json``; ``load_vision_model`` reads them back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slmkit.errors import ModelError

VISION_CONFIG, VISION_WEIGHTS = "vision_config.json", "vision.safetensors"


@dataclass(frozen=True)
class VisionConfig:
    image_size: int = 32
    patch_size: int = 8
    channels: int = 3
    width: int = 64
    layers: int = 1
    heads: int = 4


class PatchEncoder(nn.Module):
    """ViT tower: (B, C, H, W) pixels in [-1, 1] -> (B, patches, width) features."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ModelError(f"vision: image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        self.patchify = nn.Conv2d(cfg.channels, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.position = nn.Parameter(torch.randn(1, (cfg.image_size // cfg.patch_size) ** 2, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 4 * cfg.width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.patchify(pixel_values).flatten(2).transpose(1, 2)
        return self.norm(self.layers(patches + self.position))


class VisionEncDec(nn.Module):
    """An encoder–decoder text model whose encoder also reads image patches."""

    def __init__(self, text_model: Any, cfg: VisionConfig = VisionConfig()):
        super().__init__()
        if not getattr(text_model.config, "is_encoder_decoder", False):
            raise ModelError("vision input needs an encoder–decoder text model (arch encdec or t5)")
        hidden = text_model.get_input_embeddings().embedding_dim
        self.cfg = cfg
        self.vision = PatchEncoder(cfg)
        self.projector = nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.text = text_model
        self.config = text_model.config  # so slmkit helpers (decoder_start, is_encoder_decoder) see the text model

    def encoder_inputs(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None,
                       attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs_embeds`` = projected patches then text embeddings, and their attention mask."""
        image = self.projector(self.vision(pixel_values))
        mask = torch.ones(image.shape[:2], dtype=torch.long, device=image.device)
        if input_ids is None:
            return image, mask
        text = self.text.get_input_embeddings()(input_ids)
        text_mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        return torch.cat([image, text], dim=1), torch.cat([mask, text_mask], dim=1)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, **decoder_kwargs: Any) -> Any:
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask)
        return self.text(inputs_embeds=embeds, attention_mask=mask, **decoder_kwargs)

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Decoder token ids (starting with the decoder-start token), as ``text_model.generate`` returns them."""
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask)
        return self.text.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)


def to_pixels(images: list[Any], image_size: int) -> torch.Tensor:
    """PIL images -> (B, 3, size, size) float tensor in [-1, 1]."""
    import numpy as np

    arrays = [np.asarray(im.convert("RGB").resize((image_size, image_size)), dtype=np.float32) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


def collate_images(examples: list[dict[str, Any]], pad_id: int, max_length: int, decoder_start_id: int) -> dict:
    """``slmkit.train.batching.collate`` for (image, prompt, caption) examples, plus ``pixel_values``."""
    from slmkit.train.batching import collate

    batch = collate(examples, pad_id, max_length, decoder_start_id)
    batch["pixel_values"] = torch.stack([e["pixels"] for e in examples])
    return batch


def save_vision_model(model: VisionEncDec, tokenizer: Any, path: str | Path) -> Path:
    """Text model + tokenizer (``save_model``, atomic) and the vision tower beside them."""
    from safetensors.torch import save

    from slmkit.artifacts import atomic_write_bytes, atomic_write_text
    from slmkit.models.load import save_model

    path = save_model(model.text, tokenizer, path)
    tower = {f"vision.{k}": v.contiguous() for k, v in model.vision.state_dict().items()}
    tower |= {f"projector.{k}": v.contiguous() for k, v in model.projector.state_dict().items()}
    atomic_write_bytes(path / VISION_WEIGHTS, save(tower))
    atomic_write_text(path / VISION_CONFIG, json.dumps(asdict(model.cfg), indent=2) + "\n")
    return path


def load_vision_model(path: str | Path) -> VisionEncDec:
    """Inverse of :func:`save_vision_model` (safetensors only)."""
    from safetensors.torch import load_file

    from slmkit.models.load import load_model

    path = Path(path)
    for name in (VISION_CONFIG, VISION_WEIGHTS):
        if not (path / name).exists():
            raise ModelError(f"'{path}' is not a vision model folder: {name} is missing")
    model = VisionEncDec(load_model(str(path)), VisionConfig(**json.loads((path / VISION_CONFIG).read_text())))
    tower = load_file(str(path / VISION_WEIGHTS))
    model.vision.load_state_dict({k[7:]: v for k, v in tower.items() if k.startswith("vision.")})
    model.projector.load_state_dict({k[10:]: v for k, v in tower.items() if k.startswith("projector.")})
    return model
