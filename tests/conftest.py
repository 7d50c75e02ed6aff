"""Shared test fixtures.

The real-data fixtures live in ``../shared/fixtures`` beside the checkout (a real HumanML3D motion
with its joints, Mean/Std and splits; the real KIT-ML captions). They are not part of the
repository: tests that need them skip with a clear reason in clones without them.
"""
from __future__ import annotations

from pathlib import Path

import pytest

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
