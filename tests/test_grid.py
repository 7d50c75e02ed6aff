"""unit_grid: the paper's 0.5 s segmentation grid."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mate.segment import unit_frames, unit_grid


def test_paper_units():
    assert unit_frames(20) == 10  # HumanML3D
    assert unit_frames(12.5) == 6  # KIT-ML: 6.25 frames, as in the paper
    assert unit_frames(30) == 15
    assert unit_frames(25) == 13  # 12.5 rounds half up


def test_known_grids():
    np.testing.assert_array_equal(unit_grid(40, 20), [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(unit_grid(45, 20), [0, 10, 20, 30, 45])  # partial merged
    np.testing.assert_array_equal(unit_grid(196, 20), list(range(0, 190, 10)) + [196])
    np.testing.assert_array_equal(unit_grid(7, 20), [0, 7])  # shorter than one unit
    np.testing.assert_array_equal(unit_grid(25, 12.5), [0, 6, 12, 18, 25])
    assert unit_grid(40, 20).dtype == np.int64


@given(num_frames=st.integers(1, 2000), fps=st.sampled_from([12.5, 20, 24, 30, 60]))
def test_grid_properties(num_frames, fps):
    grid = unit_grid(num_frames, fps)
    unit = unit_frames(fps)
    assert grid[0] == 0 and grid[-1] == num_frames
    steps = np.diff(grid)
    assert np.all(steps[:-1] == unit)
    if num_frames >= unit:
        assert unit <= steps[-1] < 2 * unit
    assert len(grid) - 1 == max(1, num_frames // unit)


@pytest.mark.parametrize(
    "args,fragment",
    [
        ((0, 20), "num_frames must be >= 1"),
        ((-5, 20), "num_frames must be >= 1"),
        ((10.0, 20), "num_frames must be an integer"),
        ((10, 0), "fps must be a positive"),
        ((10, float("nan")), "fps must be a positive"),
        ((10, 20, -0.5), "unit_seconds must be a positive"),
        ((10, 20, 0.01), "rounds to 0 frames"),
    ],
)
def test_bad_input(args, fragment):
    with pytest.raises(ValueError, match=fragment):
        unit_grid(*args)
