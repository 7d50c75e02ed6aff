"""Loading MATE exports where OpenAI-CLIP / open_clip code expects them, and re-exporting a run.

A ``clip`` run exports ``RUN/encoder/clip_state_dict.pt``: a plain state dict in OpenAI CLIP's key
layout (`mate.text.clip_backend`). OpenAI's ``clip.load(path)`` cannot read it: it first tries
``torch.jit.load`` and fails on anything that is not a TorchScript archive (EOFError; openai/CLIP
issue #396). This module gives the repositories that call ``clip.load`` (MoMask, MDM, T2M-GPT) a
loader with the same interface:

* `clip_load(path, device="cpu", jit=False) -> (model, preprocess)`: ``path`` is a MATE export
  folder or its ``clip_state_dict.pt``. The architecture is read from the tensor shapes by the rules
  of OpenAI's ``clip.model.build_model`` (`infer_openai_clip_architecture`); the head count, which
  no shape holds, comes from the export's manifest (``mate_text_encoder.json``) when there is one,
  else from OpenAI's rule (64-wide heads). The model is OpenAI's ``clip.model.CLIP`` when the
  openai ``clip`` package can be imported and the export fits it, else `OpenAICLIP`, this module's
  own implementation of the same network (same parameter names, same forward, same fp16 recipe).
  Like ``clip.load``, the weights are converted to float16 where OpenAI's ``convert_weights`` does
  (`convert_weights_to_fp16`) unless the device is the CPU; ``fp16=True`` does it on the CPU too.
* `open_clip_load(path, model_name="ViT-B-32", device="cpu") -> (model, preprocess)`: open_clip's
  ``create_model_and_transforms(model_name, pretrained=None)`` with the export's weights loaded.

A text-only export (a run trained from a text-tower config: no ``visual.*`` weights) loads for
``encode_text``; its ``preprocess`` and ``encode_image`` raise `TextOnlyExportError` when used, so
the two-value unpacking ``model, preprocess = clip_load(...)`` of existing code keeps working.
Exports of ``hf:`` runs are Hugging Face folders: MATE has no conversion from them to the OpenAI
layout, and both loaders say so.

``python -m mate.export RUN [--out DIR] [--pytorch-model-bin] [--overwrite]`` (`main`) (re)writes
the export of a finished run from its stage-1 model (`mate.rundir.load_stage_model`), e.g. to add
``pytorch_model.bin`` for older transformers versions (`mate.text.encoders.export_text_encoder`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import math
import re
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mate.cli import add_debug_flag
from mate.text.clip_backend import CLIP_STATE_DICT_FILE, read_clip_checkpoint
from mate.text.encoder_base import EXPORT_MANIFEST, read_manifest
from mate.text.torchvision_compat import ImageTransformsUnavailableError, block_broken_torchvision, import_open_clip

__all__ = [
    "clip_load",
    "open_clip_load",
    "OpenAICLIP",
    "OpenAICLIPArchitecture",
    "VisionArchitecture",
    "infer_openai_clip_architecture",
    "convert_weights_to_fp16",
    "ClipImagePreprocess",
    "TextOnlyExportError",
    "build_parser",
    "main",
]

# Entries of OpenAI's TorchScript state dict that are metadata, not weights (``build_model`` drops them).
_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# OpenAI CLIP's image normalisation (per RGB channel, on [0, 1] pixels).
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
# open_clip text-tower options OpenAI's architecture cannot express, with the value it has.
_OPENAI_TEXT_CFG = {"mlp_ratio": 4.0, "ls_init_value": None, "embed_cls": False, "no_causal_mask": False,
                    "final_ln_after_pool": False, "pool_type": "argmax", "proj_bias": False, "proj_type": "linear",
                    "act_kwargs": None, "norm_kwargs": None, "qk_norm": False, "scaled_cosine_attn": False,
                    "scale_heads": False, "scale_attn_inner": False, "scale_attn": False, "scale_fc": False,
                    "hf_model_name": None}


class TextOnlyExportError(RuntimeError):
    """An image feature was asked of an export that holds only CLIP's text tower."""


_TEXT_ONLY_MESSAGE = ("{what} is unavailable: {path} holds only CLIP's text tower (the run started from a "
                      "text-tower config, not from a full CLIP checkpoint), so there is no image encoder. "
                      "encode_text works; for images, train from a full checkpoint (--encoder clip or "
                      "clip:/path/to/ViT-B-32.pt), whose export carries the original visual tower")


# ----------------------------------------------------------------------------- the architecture
@dataclass(frozen=True)
class VisionArchitecture:
    """CLIP's image tower. ``kind`` "vit": ``layers`` blocks of ``width`` on ``patch_size`` patches;
    "resnet": OpenAI's ModifiedResNet with ``layers`` = (blocks of stage 1..4) and stem ``width``."""

    kind: str
    image_resolution: int
    layers: int | tuple[int, int, int, int]
    width: int
    heads: int
    patch_size: int | None = None


@dataclass(frozen=True)
class OpenAICLIPArchitecture:
    """Every hyper-parameter of OpenAI's ``clip.model.CLIP`` (``vision`` None: text tower only)."""

    embed_dim: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int
    vision: VisionArchitecture | None
    quick_gelu: bool = True

    def follows_openai_rules(self) -> bool:
        """Whether OpenAI's ``build_model`` would build exactly this (64-wide heads, QuickGELU)."""
        if not self.quick_gelu or self.transformer_heads != self.transformer_width // 64:
            return False
        if self.vision is None:
            return True
        width = self.vision.width * 32 if self.vision.kind == "resnet" else self.vision.width
        return self.vision.heads == width // 64


def _block_count(state_dict: Mapping[str, Any], prefix: str) -> int:
    """How many distinct ``prefix<N>.`` blocks the keys hold."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({match.group(1) for key in state_dict if (match := pattern.match(key))})


def _heads(width: int, heads: int | None, what: str, argument: str) -> int:
    heads = width // 64 if heads is None else int(heads)
    if heads <= 0 or width % heads:
        raise ValueError(f"cannot split the {what} width {width} into {heads} attention heads (OpenAI's rule is "
                         f"width // 64); pass {argument}=<the head count the model was trained with>")
    return heads


def _vision_architecture(state_dict: Mapping[str, torch.Tensor], heads: int | None) -> VisionArchitecture | None:
    if "visual.proj" in state_dict:  # a vision transformer
        conv = state_dict["visual.conv1.weight"]  # [width, 3, patch, patch]
        width, patch = int(conv.shape[0]), int(conv.shape[-1])
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return VisionArchitecture("vit", image_resolution=patch * grid,
                                  layers=_block_count(state_dict, "visual.transformer.resblocks."), width=width,
                                  heads=_heads(width, heads, "vision transformer", "vision_heads"), patch_size=patch)
    if "visual.attnpool.positional_embedding" in state_dict:  # OpenAI's ModifiedResNet
        layers = tuple(_block_count(state_dict, f"visual.layer{stage}.") for stage in (1, 2, 3, 4))
        width = int(state_dict["visual.layer1.0.conv1.weight"].shape[0])
        tokens = state_dict["visual.attnpool.positional_embedding"].shape[0]
        grid = round((tokens - 1) ** 0.5)
        if grid * grid + 1 != tokens:
            raise ValueError(f"visual.attnpool.positional_embedding has {tokens} rows: not a square grid plus one")
        return VisionArchitecture("resnet", image_resolution=grid * 32, layers=layers, width=width,
                                  heads=_heads(width * 32, heads, "ResNet attention-pool", "vision_heads"))
    if any(key.startswith("visual.") for key in state_dict):
        sample = ", ".join(sorted(key for key in state_dict if key.startswith("visual."))[:4])
        raise ValueError(f"the visual tower is neither OpenAI's ViT (visual.proj) nor its ModifiedResNet "
                         f"(visual.attnpool.*): its keys start with {sample}; load it with open_clip_load")
    return None


def infer_openai_clip_architecture(state_dict: Mapping[str, torch.Tensor], text_heads: int | None = None,
                                   vision_heads: int | None = None, quick_gelu: bool = True) -> OpenAICLIPArchitecture:
    """The architecture of an OpenAI-layout CLIP state dict, by the rules of OpenAI's
    ``clip.model.build_model``: widths, context length and vocabulary from the tensor shapes, layer
    counts by counting blocks, heads 64 wide unless ``text_heads`` / ``vision_heads`` say otherwise
    (no tensor holds the head count). ``visual.proj`` marks a ViT image tower,
    ``visual.attnpool.*`` a ModifiedResNet, no ``visual.*`` key a text-only model.

    Raises ValueError naming what does not fit OpenAI's architecture."""
    required = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection",
                "transformer.resblocks.0.mlp.c_fc.weight")
    missing = [key for key in required if key not in state_dict]
    if missing:
        if "text.token_embedding.weight" in state_dict:
            raise ValueError("this state dict is in open_clip's CustomTextCLIP layout ('text.*' keys), not OpenAI "
                             "CLIP's: load it with open_clip_load(path, model_name=...)")
        sample = ", ".join(list(state_dict)[:5]) or "none"
        raise ValueError(f"not a CLIP state dict in the OpenAI layout: it lacks {', '.join(missing)} "
                         f"(its keys start with: {sample})")
    vocab_size, width = (int(n) for n in state_dict["token_embedding.weight"].shape)
    projection = state_dict["text_projection"]
    if projection.dim() != 2 or projection.shape[0] != width:
        raise ValueError(f"text_projection has shape {list(projection.shape)}; OpenAI's CLIP has a "
                         f"[{width}, embed_dim] matrix (an open_clip tower with a Linear projection loads with "
                         "open_clip_load)")
    hidden = int(state_dict["transformer.resblocks.0.mlp.c_fc.weight"].shape[0])
    if hidden != 4 * width:
        raise ValueError(f"the text MLP is {hidden} wide; OpenAI's CLIP has 4 x width = {4 * width} (use open_clip_load)")
    return OpenAICLIPArchitecture(
        embed_dim=int(projection.shape[1]),
        context_length=int(state_dict["positional_embedding"].shape[0]),
        vocab_size=vocab_size,
        transformer_width=width,
        transformer_heads=_heads(width, text_heads, "text transformer", "text_heads"),
        transformer_layers=_block_count(state_dict, "transformer.resblocks."),
        vision=_vision_architecture(state_dict, vision_heads),
        quick_gelu=bool(quick_gelu),
    )


# ----------------------------------------------------------------------------- the network
class _LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input's dtype (OpenAI's float16 recipe:
    the LayerNorm weights stay float32 when the rest is converted)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class _QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ResidualAttentionBlock(nn.Module):
    """Pre-LayerNorm block on [L, N, width] (sequence first): x + attn(ln_1 x), then x + mlp(ln_2 x)."""

    def __init__(self, width: int, heads: int, causal_length: int | None, quick_gelu: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = _LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", _QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))
        self.ln_2 = _LayerNorm(width)
        mask = None
        if causal_length is not None:  # additive mask: -inf above the diagonal (a token reads only its past)
            mask = torch.full((causal_length, causal_length), float("-inf")).triu(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = None if self.attn_mask is None else self.attn_mask.to(dtype=x.dtype, device=x.device)
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal_length: int | None, quick_gelu: bool) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[_ResidualAttentionBlock(width, heads, causal_length, quick_gelu)
                                         for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class _VisionTransformer(nn.Module):
    """OpenAI's ViT image tower: [N, 3, R, R] -> [N, output_dim], the class token's final state projected."""

    def __init__(self, arch: VisionArchitecture, output_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        width, patch = arch.width, arch.patch_size
        self.input_resolution, self.output_dim = arch.image_resolution, output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((arch.image_resolution // patch) ** 2 + 1, width))
        self.ln_pre = _LayerNorm(width)
        self.transformer = _Transformer(width, arch.layers, arch.heads, None, quick_gelu)
        self.ln_post = _LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        patches = self.conv1(image).flatten(2).transpose(1, 2)  # [N, grid*grid, width]
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], dim=1) + self.positional_embedding.to(patches.dtype)
        x = self.transformer(self.ln_pre(x).transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class _Bottleneck(nn.Module):
    """ModifiedResNet's block: 1x1, 3x3, (avg-pool when strided), 1x1 x4; the shortcut average-pools
    before its 1x1 convolution instead of striding it."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(planes), nn.ReLU()
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        out = planes * self.expansion
        self.conv3, self.bn3, self.relu3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, out, 1, bias=False)), ("1", nn.BatchNorm2d(out))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu2(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + shortcut)


class _AttentionPool2d(nn.Module):
    """Pools a [N, C, H, W] map to [N, output_dim]: the mean token attends over all tokens (+ itself)."""

    def __init__(self, grid: int, width: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.c_proj = nn.Linear(width, output_dim)
        self.num_heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).permute(2, 0, 1)  # [H*W, N, C]
        tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0)
        tokens = tokens + self.positional_embedding[:, None, :].to(tokens.dtype)
        pooled, _ = F.multi_head_attention_forward(
            query=tokens[:1], key=tokens, value=tokens, embed_dim_to_check=tokens.shape[-1],
            num_heads=self.num_heads, in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias, training=False, need_weights=False,
            use_separate_proj_weight=True, q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight)
        return pooled[0]


class _ModifiedResNet(nn.Module):
    """OpenAI's ResNet image tower: a 3-convolution stem with an average pool, anti-aliased strided
    stages, attention pooling."""

    def __init__(self, arch: VisionArchitecture, output_dim: int) -> None:
        super().__init__()
        width = arch.width
        self.input_resolution, self.output_dim = arch.image_resolution, output_dim
        self.conv1, self.bn1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3, self.bn3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.avgpool, self.relu = nn.AvgPool2d(2), nn.ReLU()
        inplanes = width
        for stage, blocks in enumerate(arch.layers, start=1):
            planes, stride = width * 2 ** (stage - 1), 1 if stage == 1 else 2
            layer = [_Bottleneck(inplanes, planes, stride)]
            inplanes = planes * _Bottleneck.expansion
            layer += [_Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
        self.attnpool = _AttentionPool2d(arch.image_resolution // 32, width * 32, arch.heads, output_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(self.conv1.weight.dtype)
        for conv, norm in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(norm(conv(x)))
        x = self.avgpool(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.attnpool(x)


class OpenAICLIP(nn.Module):
    """OpenAI's CLIP network (``clip.model.CLIP``) with its parameter names, so that an OpenAI-layout
    state dict loads strictly; ``visual`` is None for a text-only model.

    * ``encode_text(text)``: ``text`` [B, context_length] int64 (``clip.tokenize``) -> [B, embed_dim]
      in ``self.dtype``: the final-LayerNorm state at the end-of-text token (the highest id in each
      row) through ``text_projection``.
    * ``encode_image(image)``: [B, 3, R, R] -> [B, embed_dim] in ``self.dtype``.
    * ``forward(image, text)``: (logits_per_image [B_i, B_t], logits_per_text [B_t, B_i]).
    """

    def __init__(self, arch: OpenAICLIPArchitecture) -> None:
        super().__init__()
        self.architecture = arch
        self.context_length = arch.context_length
        self.vocab_size = arch.vocab_size
        self.visual: nn.Module | None = None
        if arch.vision is not None and arch.vision.kind == "vit":
            self.visual = _VisionTransformer(arch.vision, arch.embed_dim, arch.quick_gelu)
        elif arch.vision is not None:
            self.visual = _ModifiedResNet(arch.vision, arch.embed_dim)
        width = arch.transformer_width
        self.transformer = _Transformer(width, arch.transformer_layers, arch.transformer_heads, arch.context_length,
                                        arch.quick_gelu)
        self.token_embedding = nn.Embedding(arch.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(arch.context_length, width))
        self.ln_final = _LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, arch.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: float16 after `convert_weights_to_fp16`, else float32 (OpenAI reads it from
        ``visual.conv1``, which converts together with ``text_projection``)."""
        return self.text_projection.dtype

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        if text.dim() != 2 or text.shape[1] != self.context_length:
            raise ValueError(f"text must be [B, {self.context_length}] token ids (clip.tokenize), got {list(text.shape)}")
        x = self.token_embedding(text).to(self.dtype) + self.positional_embedding.to(self.dtype)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        x = self.ln_final(x).to(self.dtype)
        eot = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]
        return eot @ self.text_projection

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        if self.visual is None:
            raise TextOnlyExportError(_TEXT_ONLY_MESSAGE.format(what="encode_image", path="this model"))
        return self.visual(image.to(self.dtype))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def convert_weights_to_fp16(model: nn.Module) -> nn.Module:
    """OpenAI's ``clip.model.convert_weights``, in place: float16 for the weights and biases of every
    Conv1d / Conv2d / Linear, the input projections and biases of every MultiheadAttention (its
    ``out_proj`` is a Linear), and every ``text_projection`` / ``proj`` tensor. Embeddings, the
    positional and class embeddings, LayerNorm, BatchNorm and ``logit_scale`` stay float32.
    Returns ``model``."""
    def convert(module: nn.Module) -> None:
        tensors = []
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            tensors += [module.weight, module.bias]
        if isinstance(module, nn.MultiheadAttention):
            tensors += [getattr(module, name) for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight",
                                                            "v_proj_weight", "in_proj_bias", "bias_k", "bias_v")]
        tensors += [getattr(module, name, None) for name in ("text_projection", "proj")]
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                tensor.data = tensor.data.half()

    return model.apply(convert)


# ----------------------------------------------------------------------------- image preprocessing
class ClipImagePreprocess:
    """OpenAI CLIP's image preprocessing (``clip.clip._transform(n_px)``) without torchvision: the
    shorter side resized to ``n_px`` (bicubic, the longer side ``int(n_px * long / short)``), the
    centre ``n_px`` x ``n_px`` crop, RGB, [0, 1], then CLIP's per-channel normalisation. The same PIL
    calls torchvision's Resize / CenterCrop make on a PIL image. ``__call__(PIL.Image) -> [3, n_px,
    n_px] float32``."""

    def __init__(self, n_px: int) -> None:
        self.n_px = int(n_px)

    def __repr__(self) -> str:
        return f"ClipImagePreprocess(n_px={self.n_px})"

    def __call__(self, image) -> torch.Tensor:
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(image).__name__}")
        n = self.n_px
        width, height = image.size
        short, long = min(width, height), max(width, height)
        if short != n:
            other = int(n * long / short)
            image = image.resize((n, other) if width <= height else (other, n), Image.BICUBIC)
            width, height = image.size
        top, left = int(round((height - n) / 2.0)), int(round((width - n) / 2.0))
        image = image.crop((left, top, left + n, top + n)).convert("RGB")
        pixels = torch.tensor(bytearray(image.tobytes()), dtype=torch.uint8).view(n, n, 3)
        pixels = pixels.permute(2, 0, 1).float() / 255.0
        mean = torch.tensor(CLIP_IMAGE_MEAN).view(3, 1, 1)
        std = torch.tensor(CLIP_IMAGE_STD).view(3, 1, 1)
        return (pixels - mean) / std


class _Unavailable:
    """Stands where a callable (``preprocess``, a visual tower) cannot exist; raises when called."""

    def __init__(self, error: type[Exception], message: str) -> None:
        self.error, self.message = error, message

    def __repr__(self) -> str:
        return f"<unavailable: {self.message[:60]}...>"

    def __call__(self, *args, **kwargs):
        raise self.error(self.message)


class _MissingVisualTower(nn.Module):
    """open_clip's ``visual`` of a text-only export: no weights, raises when run."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def forward(self, *args, **kwargs):
        raise TextOnlyExportError(self.message)


# ----------------------------------------------------------------------------- finding the export
@dataclass(frozen=True)
class _ClipExport:
    state_path: Path
    manifest: dict | None

    @property
    def text_cfg(self) -> dict:
        return dict((self.manifest or {}).get("text_cfg") or {})

    @property
    def quick_gelu(self) -> bool | None:
        return None if self.manifest is None else bool(self.manifest.get("quick_gelu", True))


def _resolve_clip_export(path: str | Path) -> _ClipExport:
    """The state-dict file (and manifest, if any) of a MATE ``clip`` export folder or its file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no MATE export at {path}: pass a run's encoder folder (RUN/encoder) or its "
                                f"{CLIP_STATE_DICT_FILE}")
    folder = path if path.is_dir() else path.parent
    manifest = read_manifest(folder) if (folder / EXPORT_MANIFEST).is_file() else None
    if manifest is not None and manifest.get("backend") != "clip":
        if path.is_dir():
            raise ValueError(
                f"{path} is a {manifest.get('backend')!r} export (a Hugging Face folder: "
                "transformers.AutoModel.from_pretrained loads it), not a CLIP state dict. MATE has no conversion from "
                "a Hugging Face CLIP to OpenAI's layout: for the repositories that call clip.load, train with "
                "--encoder clip (or clip:/path/to/ViT-B-32.pt)")
        manifest = None  # a file beside another kind of export: judge the file by its keys
    if path.is_dir():
        if manifest is not None:
            state_path = folder / manifest.get("state_dict_file", CLIP_STATE_DICT_FILE)
        else:
            state_path = folder / CLIP_STATE_DICT_FILE
            if (folder / "config.json").is_file() and not state_path.is_file():
                raise ValueError(f"{path} is a transformers folder, not a CLIP export ({CLIP_STATE_DICT_FILE}); MATE "
                                 "has no conversion from it to OpenAI's CLIP layout")
        if not state_path.is_file():
            raise FileNotFoundError(f"{path} has no {state_path.name}: not a MATE CLIP export (a run's RUN/encoder "
                                    "folder after training with --encoder clip)")
        return _ClipExport(state_path, manifest)
    if manifest is not None and manifest.get("state_dict_file") != path.name:
        manifest = None  # the manifest describes another file of the folder
    return _ClipExport(path, manifest)


def _read_state(export: _ClipExport) -> dict[str, torch.Tensor]:
    try:
        state = read_clip_checkpoint(export.state_path)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load / unpickling / zip errors of a damaged file
        raise ValueError(f"{export.state_path}: cannot read a state dict ({type(err).__name__}: {err}); the file "
                         "is damaged or not a checkpoint: export the run again (python -m mate.export RUN)") from None
    for key in list(state):
        # Metadata, and causal masks that a scripted open_clip model saves as buffers: not weights.
        if key in _METADATA_KEYS or key == "attn_mask" or key.endswith(".attn_mask"):
            del state[key]
    if not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        sample = ", ".join(map(str, list(state)[:5])) or "none"
        raise ValueError(f"{export.state_path} is not a CLIP state dict (name -> tensor); its keys start with: {sample}")
    return state


def _check_openai_text_cfg(export: _ClipExport) -> None:
    for field, expected in _OPENAI_TEXT_CFG.items():
        value = export.text_cfg.get(field, expected)
        if value != expected:
            raise ValueError(f"{export.state_path}: the text tower has {field}={value!r}, which OpenAI's CLIP "
                             f"architecture does not have (it has {expected!r}); load it with open_clip_load")


# ----------------------------------------------------------------------------- the loaders
_NO_TORCHVISION_MESSAGE = ("open_clip's image preprocessing needs torchvision, which cannot be imported here (not "
                           "installed, or a CUDA-only PyPI build next to a CPU torch); the model loaded, its "
                           "encode_text works. Install the torchvision build matching your torch for images, or "
                           "use mate.export.ClipImagePreprocess(n_px) (OpenAI's preprocessing, PIL only)")


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@contextmanager
def _without_random_init_warning() -> Iterator[None]:
    """Silence open_clip's "No pretrained weights loaded ... initialized randomly" (a root-logger
    warning) while `open_clip_load` builds the model whose weights it loads next."""
    drop = _DropRandomInitWarning()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def _import_openai_clip():
    """OpenAI's ``clip`` package, or None where it is absent or cannot be imported (it needs
    torchvision) or is another package of that name."""
    try:
        module = importlib.import_module("clip")
        importlib.import_module("clip.model")
    except Exception:  # noqa: BLE001 - a broken dependency (torchvision) raises anything
        return None
    model_module = getattr(module, "model", None)
    if not (callable(getattr(module, "load", None)) and callable(getattr(model_module, "build_model", None))):
        return None
    return module


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], where: Path, optional: Sequence[str],
                 architecture: str) -> None:
    """``load_state_dict`` where only the keys in ``optional`` may be missing; ValueError otherwise."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{where} does not fit {architecture}: {err}") from None
    missing = [key for key in result.missing_keys if key not in optional]
    if missing or result.unexpected_keys:
        raise ValueError(f"{where} does not fit {architecture}: missing {missing[:5]}, unexpected "
                         f"{result.unexpected_keys[:5]}")


def clip_load(path: str | Path, device: str | torch.device = "cpu", jit: bool = False, *, fp16: bool | None = None,
              text_heads: int | None = None, vision_heads: int | None = None,
              implementation: str = "auto") -> tuple[nn.Module, Callable]:
    """``clip.load`` for a MATE export: returns ``(model, preprocess)`` in eval mode on ``device``.

    Args:
        path: a MATE ``clip`` export folder (``RUN/encoder``) or its ``clip_state_dict.pt`` (any
            OpenAI-layout CLIP state dict loads, as do OpenAI's own TorchScript archives).
        device: where the model goes.
        jit: must be False. ``clip.load(jit=True)`` returns OpenAI's TorchScript archive; a state
            dict has none (ValueError).
        fp16: convert to float16 as OpenAI's ``convert_weights`` does (`convert_weights_to_fp16`).
            Default, as ``clip.load``: on every device but the CPU. ``fp16=True`` on the CPU gives
            the model MoMask / MDM / T2M-GPT run on a GPU (their extra ``convert_weights`` call is then
            a no-op).
        text_heads / vision_heads: attention heads, which no tensor records. Default: the export's
            manifest (text), else OpenAI's rule width // 64.
        implementation: ``"auto"`` (OpenAI's ``clip.model.build_model`` when the ``clip`` package
            imports and the export is a full model that follows its rules, else `OpenAICLIP`),
            ``"openai"`` or ``"mate"`` (`OpenAICLIP` always).

    ``model.encode_text(clip.tokenize(texts))`` [B, 77] int64 -> [B, embed_dim] in ``model.dtype``.
    ``preprocess(PIL image) -> [3, R, R]`` float32 (`ClipImagePreprocess`, or OpenAI's torchvision
    transform with its ``clip`` package). A text-only export: ``preprocess`` and ``encode_image``
    raise `TextOnlyExportError`.

    Raises FileNotFoundError (no such path), ValueError (a Hugging Face export, a state dict that
    is not OpenAI-layout CLIP, ``jit=True``), ImportError (``implementation="openai"`` without the
    package)."""
    if jit:
        raise ValueError("jit=True loads OpenAI's TorchScript archives; a MATE export is a plain state dict with no "
                         "TorchScript archive (what makes clip.load fail with EOFError, openai/CLIP#396): call "
                         "clip_load(path, jit=False), as MoMask, MDM and T2M-GPT already do")
    if implementation not in ("auto", "openai", "mate"):
        raise ValueError(f"implementation must be 'auto', 'openai' or 'mate', got {implementation!r}")
    export = _resolve_clip_export(path)
    state = _read_state(export)
    _check_openai_text_cfg(export)
    manifest_heads = export.text_cfg.get("heads")
    quick_gelu = True if export.quick_gelu is None else export.quick_gelu
    arch = infer_openai_clip_architecture(state, text_heads=text_heads if text_heads is not None else manifest_heads,
                                          vision_heads=vision_heads, quick_gelu=quick_gelu)
    fp16 = torch.device(device).type != "cpu" if fp16 is None else bool(fp16)
    openai_clip = None if implementation == "mate" else _import_openai_clip()
    if implementation == "openai" and openai_clip is None:
        raise ImportError("implementation='openai' needs OpenAI's clip package (pip install "
                          "git+https://github.com/openai/CLIP.git, which needs torchvision)")
    if implementation == "openai" and not (arch.vision is not None and arch.follows_openai_rules()):
        raise ValueError(f"{export.state_path}: OpenAI's build_model cannot build this export (text-only, heads not "
                         "64 wide, or GELU instead of QuickGELU); use implementation='mate'")
    if openai_clip is not None and arch.vision is not None and arch.follows_openai_rules():
        model = openai_clip.model.build_model(dict(state))  # converts to float16 itself, as in clip.load
        if not fp16:
            model.float()
        transform = getattr(getattr(openai_clip, "clip", None), "_transform", None)
        resolution = int(model.visual.input_resolution)
        preprocess = transform(resolution) if callable(transform) else ClipImagePreprocess(resolution)
        return model.to(device).eval(), preprocess
    model = OpenAICLIP(arch)
    _load_strict(model, state, export.state_path, optional=("logit_scale",) if arch.vision is None else (),
                 architecture="OpenAI's CLIP as read from its shapes")
    if fp16:
        convert_weights_to_fp16(model)
    if arch.vision is None:
        preprocess = _Unavailable(TextOnlyExportError, _TEXT_ONLY_MESSAGE.format(what="preprocess",
                                                                                 path=export.state_path))
    else:
        preprocess = ClipImagePreprocess(arch.vision.image_resolution)
    return model.to(device).eval(), preprocess


def open_clip_load(path: str | Path, model_name: str = "ViT-B-32", device: str | torch.device = "cpu", *,
                   precision: str = "fp32", quick_gelu: bool | None = None) -> tuple[nn.Module, Callable]:
    """open_clip's model ``model_name`` with a MATE export's weights: ``(model, preprocess)``, in eval
    mode on ``device``. Built by ``open_clip.create_model_and_transforms(model_name, pretrained=None,
    precision=..., force_quick_gelu=...)`` (``preprocess`` is its validation transform), then the
    state dict is loaded (strictly; a text-only export may lack ``visual.*`` and ``logit_*``).

    ``model_name`` must be the open_clip config of the CLIP the run started from (ViT-B-32 for
    OpenAI's ViT-B/32, MATE's default). ``quick_gelu``: default the export's manifest (True for
    OpenAI weights), else True. ``model.encode_text(open_clip.tokenize(texts))`` [B, 77] int64 ->
    [B, embed_dim].

    Where torchvision cannot be imported (a CPU torch next to a PyPI torchvision), the model loads
    and ``preprocess`` raises ImageTransformsUnavailableError when used; for a text-only export,
    ``preprocess`` and ``model.visual`` raise `TextOnlyExportError`. Raises FileNotFoundError /
    ValueError as `clip_load`, and ValueError when ``model_name`` does not fit the weights."""
    export = _resolve_clip_export(path)
    state = _read_state(export)
    open_clip = import_open_clip()
    config = open_clip.get_model_config(model_name)
    if not config:
        raise ValueError(f"open_clip has no model config {model_name!r} (e.g. 'ViT-B-32', 'ViT-L-14')")
    if quick_gelu is None:
        quick_gelu = True if export.quick_gelu is None else export.quick_gelu
    if config.get("quick_gelu", False) and not quick_gelu:
        raise ValueError(f"open_clip's {model_name!r} uses QuickGELU but the export was trained with GELU "
                         "(its manifest's quick_gelu is false): pass the model name without '-quickgelu'")
    heads = export.text_cfg.get("heads")
    config_heads = config.get("text_cfg", {}).get("heads", 8)  # open_clip's CLIPTextCfg default
    if heads is not None and int(heads) != int(config_heads):
        raise ValueError(f"the export's text tower has {heads} attention heads, open_clip's {model_name!r} has "
                         f"{config_heads}: pass the model_name of the CLIP the run started from")
    kwargs = dict(pretrained=None, precision=precision, device=device, force_quick_gelu=bool(quick_gelu))
    with _without_random_init_warning():  # the weights are loaded right below
        if block_broken_torchvision() == "importable":
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, **kwargs)
        else:  # open_clip's transforms need torchvision: the model alone, a preprocess that says why
            model = open_clip.create_model(model_name, **kwargs)
            preprocess = _Unavailable(ImageTransformsUnavailableError, _NO_TORCHVISION_MESSAGE)
    text_only = not any(key.startswith("visual.") for key in state)
    optional = [key for key in model.state_dict() if key.startswith(("visual.", "logit_"))] if text_only else []
    _load_strict(model, state, export.state_path, optional=optional,
                 architecture=f"open_clip's {model_name!r} (pass the model_name of the CLIP the run started from)")
    if text_only:
        message = _TEXT_ONLY_MESSAGE.format(what="the image tower", path=export.state_path)
        model.visual = _MissingVisualTower(message)
        preprocess = _Unavailable(TextOnlyExportError, message)
    return model.eval(), preprocess


# ----------------------------------------------------------------------------- the command line
class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):
        raise SystemExit(f"error: {message} (see python -m mate.export --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineErrors(prog="python -m mate.export",
                       description="(Re)write the text-encoder export of a finished MATE run from its stage-1 model.")
    p.add_argument("run", type=Path, help="the run directory (python -m mate.train --out RUN)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the export (default: RUN/encoder, replaced)")
    p.add_argument("--pytorch-model-bin", action="store_true",
                   help="Hugging Face exports: also write pytorch_model.bin and the slow tokenizer's vocabulary "
                        "files, for older transformers versions (MDM, TMR environments)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_debug_flag(p)
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m mate.export``: returns the export folder. A mistake (not a finished run, weights
    missing, an option the run's backend does not take, --out exists) exits with one ``error:`` line
    before anything is written."""
    from mate.cli import user_errors
    from mate.rundir import RunDir, check_run_dir, load_stage_model
    from mate.text.encoders import export_text_encoder

    args = build_parser().parse_args(argv)
    with user_errors(args.debug):    # a user's mistake: one "error:" line (mate.cli)
        check_run_dir(args.run, stages=(1,))
        out = args.out if args.out is not None else RunDir(args.run).encoder
        overwrite = args.overwrite or args.out is None
        if out.exists() and not overwrite:
            raise FileExistsError(f"--out {out} exists: pass --overwrite to replace it")
        encoder = load_stage_model(args.run, stage=1).text_encoder
        if args.pytorch_model_bin and not encoder.legacy_bin_supported:
            raise ValueError(f"--pytorch-model-bin applies to Hugging Face exports ('minilm', 'hf:'); this run's "
                             f"{encoder.backend!r} export is a torch state dict already ({CLIP_STATE_DICT_FILE})")
        written = export_text_encoder(encoder, out, overwrite=overwrite, legacy_bin=args.pytorch_model_bin)
    print(f"wrote {written}: {', '.join(sorted(p.name for p in written.iterdir()))}")
    return written


if __name__ == "__main__":
    main()
