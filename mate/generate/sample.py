"""Owns sampling from a trained generator: :func:`load` rebuilds a generator run (its manifest,
weights, statistics and text encoder) and :class:`Generator` turns prompts into motions.

    from mate.generate import load
    gen = load("GEN_RUN")
    motions = gen.sample(["a person walks in a clockwise circle"], [120], seed=0)  # float32 [1, 120, F]
    raw = gen.denormalize(motions)                                                # the dataset's raw features
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mate.generate.diffusion import GaussianDiffusion
from mate.generate.model import DenoiserConfig, MotionDenoiser, TextCondition
from mate.generate.rundir import GeneratorRunError, GenRunDir, read_gen_manifest
from mate.generate.text import build_encoder, check_prompts, describe_source, encode_texts, encoder_fingerprint

__all__ = ["Generator", "load"]


class Generator:
    """A trained denoiser with its frozen text encoder, diffusion and data statistics.

    Attributes: ``config`` (GenConfig dict), ``denoiser`` (:class:`MotionDenoiser`, eval mode),
    ``encoder``, ``fps`` (float), ``max_frames`` (int), ``feature_dim`` (int), ``dataset``
    ("humanml3d" / "kit"), ``mean``, ``std`` (float32 ndarrays [F]), ``device``."""

    def __init__(self, manifest: dict, denoiser: MotionDenoiser, encoder, mean: np.ndarray, std: np.ndarray, device):
        self.manifest = manifest
        self.config = manifest["config"]
        self.denoiser = denoiser.eval()
        self.encoder = encoder
        self.diffusion = GaussianDiffusion(int(self.config["diffusion_steps"]))
        self.fps = float(manifest["data"]["fps"])
        self.dataset = manifest["data"]["dataset"]
        self.max_frames = denoiser.config.max_frames
        self.feature_dim = denoiser.config.feature_dim
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.device = torch.device(device)

    def frames_for_seconds(self, seconds: float) -> int:
        """round(seconds * fps), or ValueError when seconds <= 0 or it exceeds the maximum length."""
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"the duration must be a positive number of seconds, got {seconds}")
        frames = max(1, int(round(seconds * self.fps)))
        if frames > self.max_frames:
            raise ValueError(f"{seconds:g} s is {frames} frames at {self.fps:g} fps; this model generates at most "
                             f"{self.max_frames} frames ({self.max_frames / self.fps:g} s)")
        return frames

    def _lengths(self, lengths: Sequence[int], count: int) -> list[int]:
        lengths = [lengths] if isinstance(lengths, (int, np.integer)) else list(lengths)
        if len(lengths) != count:
            raise ValueError(f"got {count} prompts but {len(lengths)} lengths: give one length (frames) per prompt")
        for n in lengths:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"lengths must be positive integers (frames), got {n!r}")
            if n > self.max_frames:
                raise ValueError(f"a length of {n} frames is beyond this model's maximum of {self.max_frames} "
                                 f"({self.max_frames / self.fps:g} s at {self.fps:g} fps)")
        return [int(n) for n in lengths]

    def condition(self, texts: Sequence[str]) -> TextCondition:
        """The frozen encoder's features of ``texts`` as the denoiser reads them (on the device)."""
        feats = encode_texts(self.encoder, texts, tokens=self.denoiser.config.cross_attention)
        return TextCondition(*feats.batch(range(len(texts)))).to(self.device)

    @torch.no_grad()
    def sample(self, texts: Sequence[str], lengths: Sequence[int], guidance: float | None = None,
               steps: int | None = None, seed: int | Sequence[int] | None = None, eta: float = 0.0) -> torch.Tensor:
        """Motions for ``texts`` (B prompts) of ``lengths`` frames each: float32 [B, T, F] on the
        CPU, T = max(lengths), in the data's normalisation, zero beyond each length.

        ``guidance``: the classifier-free guidance scale s (default: the run's, 2.5; 0 ignores the
        text, 1 is the plain conditional model); ``steps``: DDIM steps (default: the run's);
        ``seed``: the start noise (None: torch's global generator; a list: one seed per prompt, each
        row's noise as if it were sampled alone); ``eta``: DDIM's noise (0 = deterministic). Raises
        ValueError for an empty or over-long prompt, a bad length."""
        texts = check_prompts(self.encoder, texts)
        lengths = self._lengths(lengths, len(texts))
        guidance = float(self.config["guidance"] if guidance is None else guidance)
        if not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance must be a number >= 0, got {guidance}")
        steps = int(self.config["sample_steps"] if steps is None else steps)
        cond = self.condition(texts)
        T = max(lengths)
        mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).to(self.device)
        generator, noise = self._start_noise(seed, len(texts), T)

        def predict(x_t, t):
            return self.denoiser.guided(x_t, t, mask, cond, guidance)

        x = self.diffusion.ddim_sample(predict, noise.shape, steps=steps, eta=eta, generator=generator,
                                       device=self.device, noise=noise)
        return (x * mask[..., None]).float().cpu()

    def _start_noise(self, seed, count: int, frames: int) -> tuple[torch.Generator | None, torch.Tensor]:
        if seed is None or isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
            return generator, torch.randn((count, frames, self.feature_dim), generator=generator)
        seeds = list(seed)
        if len(seeds) != count or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
            raise ValueError(f"seed must be an integer or one integer per prompt ({count}), got {seed!r}")
        rows = [torch.randn((1, frames, self.feature_dim), generator=torch.Generator().manual_seed(int(s)))
                for s in seeds]
        return torch.Generator().manual_seed(int(seeds[0])), torch.cat(rows)

    def denormalize(self, motion: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Raw features (``motion * Std + Mean`` with the run's statistics) of [..., F]; same type."""
        if motion.shape[-1] != self.feature_dim:
            raise ValueError(f"last dimension must be {self.feature_dim}, got shape {tuple(motion.shape)}")
        if isinstance(motion, torch.Tensor):
            return motion * torch.from_numpy(self.std).to(motion) + torch.from_numpy(self.mean).to(motion)
        return motion * self.std + self.mean


def load(run_dir: str | Path, encoder: str | Path | None = None, device: str = "cpu") -> Generator:
    """The generator trained into ``run_dir``, on ``device``. ``encoder``: where to find the text
    encoder when it moved (default: the source in ``run.json``); it must have the weights the run
    was trained with (same fingerprint), else ValueError. Raises
    :class:`mate.generate.rundir.GeneratorRunError` when ``run_dir`` is not a finished run."""
    from mate.distributed import resolve_device

    run = GenRunDir(Path(run_dir))
    manifest = read_gen_manifest(run.root)
    for path, what in ((run.model, "model.pt (training has not finished)"), (run.mean, "Mean.npy"),
                       (run.std, "Std.npy")):
        if not path.is_file():
            raise GeneratorRunError(f"{run.root} has no {what}; finish it with `python -m mate.generate.train "
                                    f"--resume` and the original flags")
    device = resolve_device(device)
    stored = manifest["encoder"]
    source = stored["source"] if encoder is None else str(encoder)
    if encoder is None and stored.get("kind") != "spec" and not Path(source).is_dir():
        raise FileNotFoundError(f"the text encoder of {run.root} ({stored.get('kind')} {source}) is not there any "
                                f"more; pass where it is now (--encoder / encoder=)")
    text_encoder = build_encoder(source, device)
    found = encoder_fingerprint(text_encoder)
    if found != stored["fingerprint"]:
        kind, where = describe_source(source)
        raise ValueError(f"the text encoder {where} ({kind}) does not match the one {run.root} was trained with "
                         f"({stored['source']}, fingerprint {stored['fingerprint']}, got {found}): pass the "
                         f"original encoder")
    state = torch.load(run.model, map_location="cpu", weights_only=True)
    config = DenoiserConfig.from_dict(state["denoiser"])
    denoiser = MotionDenoiser(config)
    denoiser.load_state_dict(state["model"])
    return Generator(manifest, denoiser.to(device), text_encoder, np.load(run.mean), np.load(run.std), device)
