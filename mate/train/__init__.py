"""``python -m mate.train``: the whole MATE pipeline from one command.

Stages (each cached in the run directory and reused on re-run while its inputs are unchanged):

    data        --data DIR (HumanML3D / KIT-ML / TMR layout) or a synthetic set generated into
                RUN/data
    subtexts    captions -> sub-texts (rule-based; or --subtexts FILE with imported LLM answers)
    vocabulary  the lemmatised training vocabulary = the K prototypes
    stage0      a text-motion retrieval model trained with L_rec + L_sent (the paper's "Baseline")
    segments    per caption, the optimal partition of its motion among its sub-texts, with costs
                1 - cos(E_t(t^n), E_m(m[a:b])) from the stage-0 encoders (C++ dynamic program)
    stage1      MATE: all losses; on the text side only the word-embedding table learns
    export      RUN/encoder/: the MATE-enhanced text encoder (drop-in replacement)

With no arguments it runs offline on a CPU: a synthetic set, the MiniLM encoder, the ``cpu-small``
preset.

Scale and robustness:

    torchrun --nproc_per_node=N -m mate.train ...   DistributedDataParallel (NCCL on GPUs, gloo on
                CPUs); --batch-size is the global batch, and every in-batch loss sees the global
                batch: N processes train exactly like one with the same global batch
                (mate.distributed). Only rank 0 writes to the run directory.
    --amp       bfloat16 autocast (CUDA, and CPU autocast on a CPU); losses stay in float32
    --compile   torch.compile of the training forward (the fused ops trace inline)
    --save-every N, --keep-checkpoints K, --resume
                atomic, checksummed checkpoints in RUN/checkpoints/ (model, optimizer, scheduler,
                every RNG, the data position); --resume continues mid-epoch from the last valid one
    --deterministic
                deterministic algorithms: a run killed and resumed ends bit-identical to an
                uninterrupted one

Bad data and mistakes:

    --data DIR  NaN/inf or empty motions, missing files and malformed captions of a split are
                skipped with one warning that names them and counts them (HumanML3D's test split
                holds two NaN motions); --strict-data stops at the first one instead
    --debug     a user's mistake (a wrong path, missing weights, a bad value) prints one
                'error:' line; --debug shows the Python traceback

The package: :mod:`~mate.train.config` (presets, :class:`TrainConfig`), :mod:`~mate.train.batches`
(sampling and collation), :mod:`~mate.train.trainer` (one stage: restore / fit / validate / save),
:mod:`~mate.train.pipeline` (the cached stages; :func:`run`, the typed entry point),
:mod:`~mate.train.cli` (the command line), :mod:`~mate.train.logs` and :mod:`~mate.train.rng`.

From Python::

    from mate.train import TrainConfig, run
    summary = run(TrainConfig(out="runs/a", epochs=2, fused=True))
"""
from .config import PRESETS, ConfigError, TrainConfig  # noqa: E402
from .pipeline import run  # noqa: E402
from .cli import build_parser, main  # noqa: E402

__all__ = ["PRESETS", "ConfigError", "TrainConfig", "build_parser", "main", "run"]
