"""Shared test fixtures.

The real-data fixtures live in ``../shared/fixtures`` beside the checkout (a real HumanML3D motion
with its joints, Mean/Std and splits; the real KIT-ML captions). They are not part of the
repository: tests that need them skip with a clear reason in clones without them.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors through the interpreter; it must be set before
# triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


def _fixture_dir(name: str) -> Path:
    path = SHARED_FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"real-data fixtures not found at {path} (../shared is absent in this clone)")
    return path


@pytest.fixture(scope="session")
def humanml3d_fixture() -> Path:
    """../shared/fixtures/humanml3d: new_joint_vecs/012314.npy, new_joints/012314.npy, Mean/Std,
    split files (no captions: the HumanML3D texts are not redistributed)."""
    return _fixture_dir("humanml3d")


@pytest.fixture(scope="session")
def kitml_fixture() -> Path:
    """../shared/fixtures/kitml: the real KIT-ML annotations.json (TMR layout) and splits/."""
    return _fixture_dir("kitml")


@pytest.fixture(scope="session")
def tiny_synthetic_dataset(tmp_path_factory) -> Path:
    """A 16-motion synthetic set in the HumanML3D layout (seconds to make)."""
    from mate.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("synthetic") / "data"
    write_dataset(root, num_motions=16, seed=3, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_hf_encoder_dir(tmp_path_factory, tiny_synthetic_dataset) -> Path:
    """A tiny randomly initialised DistilBERT (real architecture, 2 layers of width 32) and a
    WordPiece vocabulary covering the synthetic captions, saved with save_pretrained: usable as
    the encoder spec ``hf:<dir>`` wherever MiniLM would be too slow for a test."""
    import re

    import torch
    import transformers

    words = set()
    for path in (tiny_synthetic_dataset / "texts").glob("*.txt"):
        for line in path.read_text().splitlines():
            words.update(re.findall(r"[a-z]+", line.split("#")[0].lower()))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = specials + sorted(words) + [f"##{c}" for c in letters] + letters + [".", ","]
    tokenizer = transformers.BertTokenizerFast(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))})
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2,
                                           hidden_dim=64, max_position_embeddings=128)
    out = tmp_path_factory.mktemp("tiny_distilbert")
    transformers.DistilBertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
