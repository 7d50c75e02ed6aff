"""Owns the generator's training configuration: :class:`GenConfig` and its presets.

=============  =========================================================================
``cpu-small``  2 layers, width 128, 4 heads, ff 256; batch 32, lr 3e-4, 1000 diffusion steps,
               20 DDIM steps, 100 epochs: about 15 minutes on a 2-core CPU with ``--synthetic 1000
               --threads 1`` (measured; docs/generation.md)
``mdm``        MDM's published sizes (Tevet et al. 2023, GuyTevet/motion-diffusion-model's
               defaults): 8 layers, width 512, 4 heads, ff 1024, dropout 0.1, 1000 cosine
               diffusion steps, condition dropped for 10 %, batch 64, AdamW lr 1e-4 with no
               weight decay, guidance 2.5; sampling with 50 DDIM steps (MDM samples all 1000
               ancestral steps)
=============  =========================================================================

Sizes that depend on the data and the encoder (feature width, text widths, maximum length) are
filled in by :mod:`mate.generate.train` into :class:`mate.generate.model.DenoiserConfig`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

__all__ = ["GenConfig", "PRESETS", "preset", "CAPTION_SAMPLING", "dataclass_from_dict"]

#: How training reads captions: every epoch visits each training clip once, with ONE of its
#: captions drawn at random (the HumanML3D / MDM loaders' convention).
CAPTION_SAMPLING = "one random caption per clip per epoch"



def dataclass_from_dict(cls, data: dict, what: str):
    """``cls(**data)`` for a settings dataclass read back from a manifest or checkpoint; a key it
    does not know (written by another version) is a ValueError naming it, not a TypeError."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} settings {unknown}")
    return cls(**data)

@dataclass(frozen=True)
class GenConfig:
    """Everything a generator run depends on besides the data folder and the encoder."""

    preset: str = "cpu-small"
    width: int = 128
    layers: int = 2
    heads: int = 4
    ff: int = 256
    dropout: float = 0.1
    cross_attention: bool = False
    cond_drop_prob: float = 0.1
    diffusion_steps: int = 1000
    sample_steps: int = 20
    guidance: float = 2.5
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 100
    max_frames: int = 196
    seed: int = 0
    amp: bool = False
    compile: bool = False

    def __post_init__(self):
        for name in ("width", "layers", "heads", "ff", "diffusion_steps", "sample_steps", "batch_size", "epochs",
                     "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.sample_steps > self.diffusion_steps:
            raise ValueError(f"sample_steps ({self.sample_steps}) cannot exceed diffusion_steps ({self.diffusion_steps})")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GenConfig":
        return dataclass_from_dict(cls, data, "generator")

    def with_overrides(self, **overrides) -> "GenConfig":
        """A copy with the given fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, GenConfig] = {
    "cpu-small": GenConfig(),
    "mdm": GenConfig(preset="mdm", width=512, layers=8, heads=4, ff=1024, dropout=0.1, diffusion_steps=1000,
                     sample_steps=50, guidance=2.5, batch_size=64, lr=1e-4, weight_decay=0.0, epochs=500),
}


def preset(name: str) -> GenConfig:
    """The preset called ``name``, or ValueError listing the presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown generator preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
