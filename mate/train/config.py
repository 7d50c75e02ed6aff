"""The training configuration: presets and one frozen :class:`TrainConfig`, resolved once.

A preset fills in whatever the caller does not set; after :meth:`TrainConfig.resolve` no field is
None that a stage reads (except the optional ones documented below). The resolved configuration
is what the run directory's manifest (``run.json``) and every checkpoint record, and what
:func:`mate.train.run` takes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from mate.model.losses import LOSS_NAMES
from mate.ops import PRIOR_VARIANTS

__all__ = ["PRESETS", "PRESET_FIELDS", "PROTOTYPE_INIT", "WORD_SAMPLING", "ConfigError", "TrainConfig"]

#: How stage 1 samples its words (:func:`mate.train.pipeline.word_samples`; ``--word-sampling``).
WORD_SAMPLING = ("paper", "motion-words")
#: How stage 1 initialises the prototypes: proj (P_k <- Proj(WE(w_k)), the paper; Proj is freshly
#: initialised when the embedding width is not D) or random (N(0, 0.02^2) rows, independent of the table).
PROTOTYPE_INIT = ("proj", "random")

# The paper's hyper-parameters, and a preset that finishes on a 2-core CPU in minutes.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        batch_size=64, epochs=100, stage0_epochs=100, lr_word=1e-5, lr=1e-4, weight_decay=0.01,
        d_model=512, motion_layers=6, motion_heads=4, motion_ff=1024, synthetic_motions=14616,
    ),
    # cpu-small: 8 + 20 epochs (120 + 300 steps on the default 200-motion set), chosen under the
    # plug-and-play protocol and the segmentation's boundary error (README, "Evaluate").
    "cpu-small": dict(
        batch_size=32, epochs=20, stage0_epochs=8, lr_word=2e-4, lr=2e-4, weight_decay=0.01,
        d_model=128, motion_layers=2, motion_heads=4, motion_ff=256, synthetic_motions=200,
    ),
}
#: The fields a preset sets (None in a TrainConfig until resolved).
PRESET_FIELDS = tuple(PRESETS["paper"])


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the command-line flag."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``python -m mate.train`` can be told, one field per flag (``--stage0-epochs`` is
    ``stage0_epochs``). Fields the preset sets are None until :meth:`resolve`; ``lambda_word``,
    ``lambda_sent`` and ``dropout`` stay None for "the model's default" (the paper's 0.1)."""

    data: Path | None = None            # dataset folder; None: a synthetic set in RUN/data
    encoder: str = "minilm"
    preset: str = "cpu-small"
    out: Path = Path("runs/mate")
    epochs: int | None = None           # stage 1 (MATE)
    stage0_epochs: int | None = None    # stage 0 (the retrieval baseline)
    batch_size: int | None = None       # the global batch
    max_steps: int | None = None        # per stage
    lr_word: float | None = None        # the word-embedding table
    lr: float | None = None             # everything else that learns
    weight_decay: float | None = None
    d_model: int | None = None
    motion_layers: int | None = None
    motion_heads: int | None = None
    motion_ff: int | None = None
    synthetic_motions: int | None = None
    seed: int = 0
    device: str = "auto"
    fused: bool = False
    subtexts: Path | None = None        # JSONL of imported LLM answers
    prior: str = "gaussian"
    cross_negatives: str = "literal"    # how L_cross picks N(i): literal | exclude_lemma
    subclip_crops: float = 0.0          # stage 0: probability of training on a random sub-clip
    word_sampling: str = "paper"        # stage 1: paper | motion-words (mate.train.pipeline.word_samples)
    prototype_init: str = "proj"        # stage 1: proj (the paper) | random (PROTOTYPE_INIT)
    no_rec: bool = False
    no_sent: bool = False
    no_self: bool = False
    no_cross: bool = False
    no_align: bool = False
    lambda_word: float | None = None
    lambda_sent: float | None = None
    dropout: float | None = None
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    amp: bool = False
    compile: str | None = None          # a torch.compile backend
    deterministic: bool = False
    save_every: int = 0
    keep_checkpoints: int = 3
    resume: bool = False
    num_workers: int = 0
    log_every: int = 10
    no_export: bool = False
    pytorch_model_bin: bool = False     # the export also writes pytorch_model.bin (older transformers)
    strict_data: bool = False           # True: a bad dataset input raises; False: skipped, one warning

    def __post_init__(self):
        for name in ("data", "subtexts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not isinstance(self.out, Path):
            object.__setattr__(self, "out", Path(self.out))

    # --------------------------------------------------------------------------- resolution
    def resolve(self) -> "TrainConfig":
        """The same configuration with every preset field filled in from :data:`PRESETS`
        (validated: :class:`ConfigError` names the first bad value)."""
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset {self.preset!r}: choose from {', '.join(sorted(PRESETS))}")
        preset = PRESETS[self.preset]
        filled = {name: preset[name] for name in PRESET_FIELDS if getattr(self, name) is None}
        config = replace(self, **filled)
        config.validate()
        return config

    @property
    def resolved(self) -> bool:
        return all(getattr(self, name) is not None for name in PRESET_FIELDS)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the flag of the first invalid value."""
        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")

        for name in ("epochs", "stage0_epochs", "batch_size", "max_steps", "synthetic_motions"):
            value = getattr(self, name)
            if value is not None and value < (0 if name in ("epochs", "stage0_epochs") else 1):
                raise ConfigError(f"{flag(name)} must be positive, got {value}")
        for name in ("lr_word", "lr"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{flag(name)} must be a positive number, got {value}")
        for name in ("save_every", "warmup_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.log_every < 1:
            raise ConfigError(f"--log-every must be >= 1, got {self.log_every}")
        for name in ("lambda_word", "lambda_sent"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{flag(name)} must be a finite number >= 0, got {value}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.prior not in PRIOR_VARIANTS:
            raise ConfigError(f"--prior {self.prior!r}: choose from {', '.join(PRIOR_VARIANTS)}")
        from mate.model.mate_model import CROSS_NEGATIVE_RULES

        if self.word_sampling not in WORD_SAMPLING:
            raise ConfigError(f"--word-sampling {self.word_sampling!r}: choose from {', '.join(WORD_SAMPLING)}")
        if self.pytorch_model_bin and (self.no_export or self.encoder.split(":")[0] == "clip"):
            raise ConfigError("--pytorch-model-bin applies to a Hugging Face export ('minilm', 'hf:'), "
                              + ("not with --no-export" if self.no_export else "not to a clip run's state dict"))
        if self.prototype_init not in PROTOTYPE_INIT:
            raise ConfigError(f"--prototype-init {self.prototype_init!r}: choose from {', '.join(PROTOTYPE_INIT)}")
        if not 0.0 <= self.subclip_crops <= 1.0:
            raise ConfigError(f"--subclip-crops must be a probability in [0, 1], got {self.subclip_crops}")

        if self.cross_negatives not in CROSS_NEGATIVE_RULES:
            raise ConfigError(f"--cross-negatives {self.cross_negatives!r}: choose from "
                              f"{', '.join(r.replace('_', '-') for r in CROSS_NEGATIVE_RULES)}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"--lr-schedule {self.lr_schedule!r}: choose from constant, cosine")
        if self.data is not None and not self.data.is_dir():
            raise ConfigError(f"--data {self.data} is not a directory")
        if self.subtexts is not None and not self.subtexts.is_file():
            raise ConfigError(f"--subtexts {self.subtexts} is not a file")
        from mate.distributed import resolve_device

        try:  # a malformed or unavailable --device is a usage error, before any output
            resolve_device(self.device)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    # ----------------------------------------------------------------------------- per stage
    def uses_loss(self, name: str) -> bool:
        """Whether L_<name> (:data:`mate.model.losses.LOSS_NAMES`) is not switched off."""
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {name!r}; expected one of {LOSS_NAMES}")
        return not getattr(self, f"no_{name}")

    def model_config(self, word_losses: bool):
        """The :class:`mate.model.mate_model.MATEConfig` of stage 1 (``word_losses``) or stage 0.

        Stage 0 trains L_rec + L_sent only, so settings that act only through the word losses
        (lambda1, the localisation prior) keep the model's defaults there: runs that differ only
        in them build the same stage-0 model, with the same cache key, and share one stage 0."""
        from mate.model.mate_model import MATEConfig

        extra: dict[str, Any] = {}
        if self.dropout is not None:
            extra.update(motion_dropout=self.dropout, attention_dropout=self.dropout)
        if self.lambda_sent is not None:
            extra["lambda_sent"] = self.lambda_sent
        if word_losses:
            extra["prior_variant"] = self.prior
            extra["cross_negatives"] = self.cross_negatives
            if self.lambda_word is not None:
                extra["lambda_word"] = self.lambda_word
        return MATEConfig(
            d_model=self.d_model, motion_layers=self.motion_layers, motion_heads=self.motion_heads,
            motion_ff=self.motion_ff, use_rec=not self.no_rec, use_sent=not self.no_sent,
            use_self=word_losses and not self.no_self, use_cross=word_losses and not self.no_cross,
            use_align=word_losses and not self.no_align, **extra,
        )

    # ---------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        out = asdict(self)
        for name in ("data", "subtexts", "out"):
            if out[name] is not None:
                out[name] = str(out[name])
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (unknown keys raise :class:`ConfigError`)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}")
        return cls(**values)
