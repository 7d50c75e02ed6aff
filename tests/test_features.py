"""HumanML3D / KIT-ML motion features: recovery against the real fixture, round trips, numpy vs
torch, kinematics conventions, bad inputs."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mate.data.features import (
    HUMANML3D_FEATURE_DIM, KITML_FEATURE_DIM, canonicalize_joints, feature_layout,
    joints_to_features, recover_joints, recover_root, retarget_bone_lengths,
)
from mate.data.skeleton import (
    HUMANML3D, HUMANML3D_KINEMATIC_CHAINS, HUMANML3D_PARENTS, HUMANML3D_TARGET_BONE_LENGTHS,
    HUMANML3D_TARGET_OFFSETS, KITML, KITML_KINEMATIC_CHAINS, KITML_PARENTS, KITML_RAW_OFFSETS,
    axis_angle_to_matrix, bone_lengths, cont6d_to_matrix, forward_kinematics,
    gaussian_smooth_nearest, get_skeleton, inverse_kinematics, kinematic_chains,
    matrix_to_cont6d, matrix_to_quaternion, qbetween, qinv, qmul, qnormalize, qrot,
    quaternion_to_cont6d, quaternion_to_matrix, rotation_parents,
)

FIXTURE_ID = "012314"

# KIT-ML bone lengths in millimetres (plausible MMM proportions; shoulders wider than hips, as
# the facing-direction recipe requires).
KIT_BONE_LENGTHS_MM = np.array([0, 110, 130, 140, 120, 170, 290, 260, 170, 290, 260,
                                95, 430, 420, 80, 70, 95, 430, 420, 80, 70], dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _load_fixture(root):
    features = np.load(root / "new_joint_vecs" / f"{FIXTURE_ID}.npy")
    joints = np.load(root / "new_joints" / f"{FIXTURE_ID}.npy")
    return features, joints


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _synthetic_motion(spec, offsets, num_frames=60, seed=0, yaw0=0.7, start=(2.0, 0.3, -1.5)):
    """A smooth random walk-like motion built with forward_kinematics: every joint swings about
    all three axes (±0.35 rad sinusoids), the root turns (heading sinusoid) and walks along its
    heading. Returns joints [T, J, 3] float64 and the local rotations used."""
    rng = np.random.default_rng(seed)
    num_joints = spec.num_joints
    t = np.arange(num_frames, dtype=np.float64)[:, None, None] / spec.fps
    amp = rng.uniform(-0.35, 0.35, (2, num_joints, 3))
    freq = rng.uniform(0.3, 1.5, (2, num_joints, 3))
    phase = rng.uniform(0.0, 2 * np.pi, (2, num_joints, 3))
    axis_angle = sum(amp[k] * np.sin(2 * np.pi * freq[k] * t + phase[k]) for k in range(2))
    local = axis_angle_to_matrix(axis_angle)
    heading = yaw0 + 0.8 * np.sin(2 * np.pi * 0.25 * t[:, 0, 0])
    tilt = axis_angle_to_matrix(0.3 * axis_angle[:, 0])
    local[:, 0] = np.stack([_rot_y(h) for h in heading]) @ tilt
    scale = np.linalg.norm(offsets, axis=-1)[[4, 7]].sum()  # a leg: ~0.8 m or ~850 mm
    step = 1.2 * scale / spec.fps
    root = np.zeros((num_frames, 3))
    root[:, 0] = start[0] * scale + np.cumsum(step * np.sin(heading))
    root[:, 2] = start[2] * scale + np.cumsum(step * np.cos(heading))
    root[:, 1] = (1.1 + start[1] + 0.03 * np.sin(2 * np.pi * 1.7 * t[:, 0, 0])) * scale
    return forward_kinematics(local, root, offsets, spec.parents), local


@pytest.fixture(scope="module")
def hml_motion():
    joints, _ = _synthetic_motion(HUMANML3D, HUMANML3D_TARGET_OFFSETS)
    return joints


# ---------------------------------------------------------------------------------------------
# real fixture
# ---------------------------------------------------------------------------------------------

def test_recover_joints_matches_released_joints(humanml3d_fixture):
    features, joints = _load_fixture(humanml3d_fixture)
    assert features.shape == (170, HUMANML3D_FEATURE_DIM) and joints.shape == (170, 22, 3)
    recovered = recover_joints(features)
    assert recovered.shape == joints.shape and recovered.dtype == np.float32
    assert np.abs(recovered.astype(np.float64) - joints).max() < 1e-6
    recovered64 = recover_joints(features.astype(np.float64))
    assert recovered64.dtype == np.float64
    assert np.abs(recovered64 - joints).max() < 1e-6
    for dtype in (torch.float32, torch.float64):
        out = recover_joints(torch.from_numpy(features).to(dtype))
        assert isinstance(out, torch.Tensor) and out.dtype == dtype
        assert np.abs(out.double().numpy() - joints).max() < 1e-6


def test_fixture_feature_round_trip_with_extrapolated_final_frame(humanml3d_fixture):
    """F -> joints (plus the final pose rebuilt from the last velocity row) -> F, every block."""
    features, _ = _load_fixture(humanml3d_fixture)
    features = features.astype(np.float64)
    joints = recover_joints(features, extrapolate_final_frame=True)
    assert joints.shape == (171, 22, 3)
    again = joints_to_features(joints)
    assert again.shape == features.shape
    layout = feature_layout("humanml3d")
    # Measured: 1.3e-7, 1.5e-8, 0, 1.4e-7, 2.1e-6, 3.1e-7, 0.
    bounds = {"root_angular_velocity": 1e-6, "root_linear_velocity": 1e-6, "root_height": 1e-7,
              "ric": 1e-6, "rotations": 5e-6, "velocities": 1e-6, "foot_contacts": 0.0}
    for name, block in layout.blocks().items():
        err = np.abs(again[:, block] - features[:, block]).max()
        assert err <= bounds[name], (name, err)


def test_fixture_feature_round_trip_without_final_frame(humanml3d_fixture):
    """F -> T joints -> T-1 rows. The facing smoothing (Gaussian, sigma 20, radius 80 frames,
    edge padding) sees a clip one frame shorter, so only rows whose smoothing window (and the
    next frame's, for velocities) ends before the last frame are unchanged: rows 0..T-82."""
    features, _ = _load_fixture(humanml3d_fixture)
    features = features.astype(np.float64)
    again = joints_to_features(recover_joints(features))
    assert again.shape == (169, HUMANML3D_FEATURE_DIM)
    reference = features[:-1]
    unaffected = len(features) - 81  # rows 0..88
    layout = feature_layout(263)
    # Tail bounds: measured max error over rows 89..168, times ~1.5.
    tail_bounds = {"root_angular_velocity": 5e-4, "root_linear_velocity": 2e-4,
                   "root_height": 0.0, "ric": 1e-2, "rotations": 2e-2, "velocities": 6e-4,
                   "foot_contacts": 0.0}
    for name, block in layout.blocks().items():
        err = np.abs(again[:, block] - reference[:, block]).max(axis=1)
        assert err[:unaffected].max() <= 5e-6, (name, err[:unaffected].max())
        assert err.max() <= tail_bounds[name], (name, err.max())


def test_fixture_rotation_block_drives_forward_kinematics(humanml3d_fixture):
    """The released 6D block, with the integrated root rotation, the target skeleton and our FK,
    reproduces the released joints: the FK convention is HumanML3D's."""
    features, joints = _load_fixture(humanml3d_fixture)
    features = features.astype(np.float64)
    layout = feature_layout(263)
    root_rotation, root_position = recover_root(features)
    local = np.concatenate([
        quaternion_to_matrix(root_rotation)[:, None],
        cont6d_to_matrix(features[:, layout.rotations].reshape(-1, 21, 6))], axis=1)
    positions = forward_kinematics(local, root_position, HUMANML3D_TARGET_OFFSETS,
                                   HUMANML3D_PARENTS)
    assert np.abs(positions - joints).max() < 5e-6  # measured 1.3e-6 (float32 data)


def test_fixture_bones_match_target_skeleton(humanml3d_fixture):
    _, joints = _load_fixture(humanml3d_fixture)
    lengths = bone_lengths(joints.astype(np.float64), HUMANML3D_PARENTS)
    assert np.abs(lengths - HUMANML3D_TARGET_BONE_LENGTHS).max() < 3e-6


# ---------------------------------------------------------------------------------------------
# synthetic round trips (HumanML3D and KIT-ML)
# ---------------------------------------------------------------------------------------------

def test_joints_to_features_round_trip(hml_motion):
    features = joints_to_features(hml_motion)
    assert features.shape == (len(hml_motion) - 1, HUMANML3D_FEATURE_DIM)
    assert features.dtype == np.float64
    canonical = canonicalize_joints(hml_motion)
    # Canonical frame: on the floor, first root at x = z = 0, first frame facing +Z.
    assert abs(canonical[..., 1].min()) < 1e-12
    assert np.abs(canonical[0, 0, [0, 2]]).max() < 1e-12
    r_hip, l_hip, r_sdr, l_sdr = HUMANML3D.face_joints
    across = canonical[0, r_hip] - canonical[0, l_hip] + canonical[0, r_sdr] - canonical[0, l_sdr]
    forward = np.cross([0.0, 1.0, 0.0], across)
    assert np.allclose(forward / np.linalg.norm(forward), [0.0, 0.0, 1.0], atol=1e-12)

    recovered = recover_joints(features)
    assert np.abs(recovered - canonical[:-1]).max() < 1e-9
    recovered_all = recover_joints(features, extrapolate_final_frame=True)
    assert np.abs(recovered_all - canonical).max() < 1e-9
    # ... and features -> joints -> features is exact too.
    again = joints_to_features(recovered_all)
    assert np.abs(again - features).max() < 1e-9


def test_features_invariant_to_yaw_and_translation(hml_motion):
    moved = hml_motion @ _rot_y(2.3).T + np.array([-4.0, 0.7, 9.0])
    assert np.abs(joints_to_features(moved) - joints_to_features(hml_motion)).max() < 1e-9


def test_float32_input_gives_float32_features(hml_motion):
    features32 = joints_to_features(hml_motion.astype(np.float32))
    assert features32.dtype == np.float32
    features = joints_to_features(hml_motion)
    layout = feature_layout(263)
    # Contacts are thresholded, so a float32 rounding may flip one; everything else is close.
    head = slice(0, layout.foot_contacts.start)
    assert np.abs(features32[:, head] - features[:, head]).max() < 1e-4


def test_rotation_block_is_inverse_kinematics(hml_motion):
    """6D block == local rotations of our IK; FK of IK gives the positions back; FK from the
    features' own rotation block reproduces the ric-recovered joints."""
    features = joints_to_features(hml_motion)
    layout = feature_layout(263)
    canonical = canonicalize_joints(hml_motion)
    local = inverse_kinematics(canonical)
    assert local.shape == (len(canonical), 22, 3, 3)
    expected_6d = matrix_to_cont6d(local[:-1, 1:]).reshape(len(features), -1)
    assert np.abs(features[:, layout.rotations] - expected_6d).max() < 1e-12
    rebuilt = forward_kinematics(local, canonical[:, 0], HUMANML3D_TARGET_OFFSETS,
                                 HUMANML3D_PARENTS)
    assert np.abs(rebuilt - canonical).max() < 1e-9

    root_rotation, root_position = recover_root(features)
    from_rotations = forward_kinematics(
        np.concatenate([quaternion_to_matrix(root_rotation)[:, None],
                        cont6d_to_matrix(features[:, layout.rotations].reshape(-1, 21, 6))], 1),
        root_position, HUMANML3D_TARGET_OFFSETS, HUMANML3D_PARENTS)
    assert np.abs(from_rotations - recover_joints(features)).max() < 1e-9


def test_ik_recovers_swing_only_rotations():
    """IK returns the generating rotations when they are swing-only (no twist about the bone)
    and the root is HumanML3D's facing rotation; with twist the positions agree but not the 6D."""
    joints, local = _synthetic_motion(HUMANML3D, HUMANML3D_TARGET_OFFSETS, num_frames=30, seed=3)
    ik = inverse_kinematics(joints)
    fk_again = forward_kinematics(ik, joints[:, 0], HUMANML3D_TARGET_OFFSETS, HUMANML3D_PARENTS)
    assert np.abs(fk_again - joints).max() < 1e-9
    assert np.abs(ik[:, 1:] - local[:, 1:]).max() > 1e-2  # random rotations carry twist
    # IK rotations are swing-only, so they are a fixed point: FK then IK returns them.
    assert np.abs(inverse_kinematics(fk_again) - ik).max() < 1e-9


def test_kit_shapes_and_round_trip():
    offsets = KITML_RAW_OFFSETS * KIT_BONE_LENGTHS_MM[:, None]
    joints, _ = _synthetic_motion(KITML, offsets, num_frames=40, seed=1)
    assert joints.shape == (40, 21, 3)
    features = joints_to_features(joints, dataset="kit")
    assert features.shape == (39, KITML_FEATURE_DIM) == (39, 251)
    layout = feature_layout(251)
    assert layout.num_joints == 21 and layout.foot_contacts == slice(247, 251)
    recovered = recover_joints(features)
    assert recovered.shape == (39, 21, 3)
    canonical = canonicalize_joints(joints, "kit")
    assert np.abs(recovered - canonical[:-1]).max() < 1e-7 * np.abs(canonical).max()
    torch_recovered = recover_joints(torch.from_numpy(features))
    assert torch_recovered.shape == (39, 21, 3)
    assert np.abs(torch_recovered.numpy() - recovered).max() < 1e-9


def test_retargeting_option(hml_motion):
    # Stretch every bone by a different factor, then retarget onto the HumanML3D skeleton.
    rng = np.random.default_rng(5)
    lengths = HUMANML3D_TARGET_BONE_LENGTHS * rng.uniform(0.8, 1.25, 22)
    joints, _ = _synthetic_motion(HUMANML3D, HUMANML3D.raw_offsets * lengths[:, None], seed=2)
    retargeted = retarget_bone_lengths(joints, HUMANML3D_TARGET_BONE_LENGTHS)
    assert np.abs(bone_lengths(retargeted, HUMANML3D_PARENTS)[:, 1:]
                  - HUMANML3D_TARGET_BONE_LENGTHS[1:]).max() < 1e-12
    features = joints_to_features(joints, target_bone_lengths=HUMANML3D_TARGET_BONE_LENGTHS)
    recovered = recover_joints(features)
    assert np.abs(bone_lengths(recovered, HUMANML3D_PARENTS)[:, 1:]
                  - HUMANML3D_TARGET_BONE_LENGTHS[1:]).max() < 1e-9
    # A motion already on the target skeleton is unchanged (leg scale 1, same bones).
    same = joints_to_features(hml_motion, target_bone_lengths=HUMANML3D_TARGET_BONE_LENGTHS)
    assert np.abs(same - joints_to_features(hml_motion)).max() < 1e-9


def test_foot_contacts_follow_threshold(hml_motion):
    layout = feature_layout(263)
    canonical = canonicalize_joints(hml_motion)
    feet = list(HUMANML3D.left_foot) + list(HUMANML3D.right_foot)
    assert feet == [7, 10, 8, 11]
    squared_step = ((canonical[1:, feet] - canonical[:-1, feet]) ** 2).sum(-1)
    for threshold in (0.002, 1e-4, 0.05):
        contacts = joints_to_features(hml_motion, feet_threshold=threshold)[:, layout.foot_contacts]
        assert np.array_equal(contacts, (squared_step < threshold).astype(np.float64))
    # A person standing still has every foot in contact.
    still = np.repeat(hml_motion[:1], 5, axis=0)
    assert np.all(joints_to_features(still)[:, layout.foot_contacts] == 1.0)


# ---------------------------------------------------------------------------------------------
# numpy vs torch
# ---------------------------------------------------------------------------------------------

def test_torch_and_numpy_agree(hml_motion):
    features = joints_to_features(hml_motion)
    torch_features = joints_to_features(torch.from_numpy(hml_motion).float())
    assert isinstance(torch_features, torch.Tensor) and torch_features.dtype == torch.float32
    assert np.abs(torch_features.double().numpy() - features).max() < 1e-4

    reference = recover_joints(features)
    batch = np.stack([features, features[::-1].copy()])  # [2, T, 263], leading batch dim
    batch_np = recover_joints(batch)
    assert batch_np.shape == (2, len(features), 22, 3)
    assert np.abs(batch_np[0] - reference).max() < 1e-12
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        batch_t = recover_joints(torch.from_numpy(batch).to(dtype))
        assert batch_t.dtype == dtype
        assert np.abs(batch_t.double().numpy() - batch_np).max() < tol
    root_rotation, root_position = recover_root(torch.from_numpy(features))
    root_rotation_np, root_position_np = recover_root(features)
    assert np.abs(root_rotation.numpy() - root_rotation_np).max() < 1e-12
    assert np.abs(root_position.numpy() - root_position_np).max() < 1e-12


def test_torch_recover_joints_is_differentiable(hml_motion):
    features = torch.from_numpy(joints_to_features(hml_motion)).requires_grad_(True)
    recover_joints(features, extrapolate_final_frame=True).square().sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert features.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# rotation utilities and skeleton structure
# ---------------------------------------------------------------------------------------------

def test_rotation_helpers_numpy_and_torch():
    rng = np.random.default_rng(7)
    q = qnormalize(rng.normal(size=(64, 4)))
    r = qnormalize(rng.normal(size=(64, 4)))
    v = rng.normal(size=(64, 3))
    m = quaternion_to_matrix(q)
    # qrot agrees with the matrix; qmul composes; qinv inverts.
    assert np.abs(qrot(q, v) - (m @ v[..., None])[..., 0]).max() < 1e-12
    assert np.abs(quaternion_to_matrix(qmul(q, r)) - m @ quaternion_to_matrix(r)).max() < 1e-12
    assert np.abs(qrot(qinv(q), qrot(q, v)) - v).max() < 1e-12
    # Matrix <-> quaternion (w >= 0) and 6D (first two columns) round trips.
    q_back = matrix_to_quaternion(m)
    assert np.all(q_back[:, 0] >= 0)
    assert np.abs(quaternion_to_matrix(q_back) - m).max() < 1e-12
    d6 = quaternion_to_cont6d(q)
    assert np.array_equal(d6, np.concatenate([m[..., :, 0], m[..., :, 1]], -1))
    assert np.abs(cont6d_to_matrix(d6) - m).max() < 1e-12
    assert np.abs(cont6d_to_matrix(d6 * 3.0) - m).max() < 1e-12  # scale-free Gram-Schmidt
    # qbetween maps v0 onto v1's direction, including the antiparallel case.
    v1 = rng.normal(size=(64, 3))
    for target in (v1, -v):
        mapped = qrot(qbetween(v, target), v)
        expected = target / np.linalg.norm(target, axis=-1, keepdims=True)
        assert np.abs(mapped / np.linalg.norm(v, axis=-1, keepdims=True) - expected).max() < 1e-9
    half_turn = qbetween(np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 1.0]))
    assert np.allclose(np.abs(half_turn), [0, 0, 1, 0])  # about y
    # torch gives the same numbers.
    as_t = [torch.from_numpy(x) for x in (q, r, v, v1)]
    assert np.abs(qmul(as_t[0], as_t[1]).numpy() - qmul(q, r)).max() < 1e-12
    assert np.abs(qrot(as_t[0], as_t[2]).numpy() - qrot(q, v)).max() < 1e-12
    assert np.abs(qbetween(as_t[2], as_t[3]).numpy() - qbetween(v, v1)).max() < 1e-12
    assert np.abs(matrix_to_quaternion(torch.from_numpy(m)).numpy() - q_back).max() < 1e-12
    assert np.abs(cont6d_to_matrix(torch.from_numpy(d6)).numpy() - m).max() < 1e-12


def test_forward_kinematics_torch_matches_numpy(hml_motion):
    local = inverse_kinematics(hml_motion)
    fk_np = forward_kinematics(local, hml_motion[:, 0], HUMANML3D_TARGET_OFFSETS,
                               HUMANML3D_PARENTS)
    fk_t = forward_kinematics(torch.from_numpy(local), torch.from_numpy(hml_motion[:, 0]),
                              HUMANML3D_TARGET_OFFSETS, HUMANML3D_PARENTS)
    assert isinstance(fk_t, torch.Tensor)
    assert np.abs(fk_t.numpy() - fk_np).max() < 1e-12
    batched = forward_kinematics(np.stack([local, local]), np.stack([hml_motion[:, 0]] * 2),
                                 HUMANML3D_TARGET_OFFSETS, HUMANML3D_PARENTS)
    assert batched.shape == (2,) + hml_motion.shape


def test_rest_pose_and_rotation_parents():
    # Identity rotations give the rest pose: each joint at its parent plus its offset.
    identity = np.broadcast_to(np.eye(3), (1, 22, 3, 3))
    rest = forward_kinematics(identity, np.zeros((1, 3)), HUMANML3D_TARGET_OFFSETS,
                              HUMANML3D_PARENTS)[0]
    parents = np.array([max(p, 0) for p in HUMANML3D_PARENTS])
    assert np.allclose(rest - rest[parents], HUMANML3D_TARGET_OFFSETS)
    # HumanML3D's chains restart from the root rotation: collars 13, 14 (and KIT 5, 8).
    hml = rotation_parents(HUMANML3D_PARENTS)
    assert hml[13] == hml[14] == 0 and hml[12] == 9
    kit = rotation_parents(KITML_PARENTS)
    assert kit[5] == kit[8] == 0 and kit[4] == 3
    for parent_list, chains in ((HUMANML3D_PARENTS, HUMANML3D_KINEMATIC_CHAINS),
                                (KITML_PARENTS, KITML_KINEMATIC_CHAINS)):
        derived = {tuple(c) for c in kinematic_chains(parent_list)}
        assert derived == set(chains)
    # A rotation of the spine joint 9 moves the neck chain but not the collars.
    bent = np.array(identity)
    bent[0, 9] = _rot_y(0.0) @ axis_angle_to_matrix(np.array([0.5, 0.0, 0.0]))
    moved = forward_kinematics(bent, np.zeros((1, 3)), HUMANML3D_TARGET_OFFSETS,
                               HUMANML3D_PARENTS)[0]
    assert not np.allclose(moved[12], rest[12]) and not np.allclose(moved[15], rest[15])
    assert np.allclose(moved[13] - moved[9], rest[13] - rest[9])


def test_gaussian_smoothing_matches_direct_sum():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(30, 3))
    sigma = 2.5
    radius = int(4 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    direct = np.stack([sum(kernel[k] * x[np.clip(t + taps[k], 0, 29)]
                           for k in range(len(taps))) for t in range(30)])
    assert np.abs(gaussian_smooth_nearest(x, sigma) - direct).max() < 1e-12
    assert np.array_equal(gaussian_smooth_nearest(x, 0.0), x)


def test_skeleton_specs():
    assert get_skeleton("HumanML3D") is HUMANML3D and get_skeleton("kit-ml") is KITML
    assert HUMANML3D.feature_dim == 263 and KITML.feature_dim == 251
    assert HUMANML3D.face_joints == (2, 1, 17, 16) and KITML.face_joints == (11, 16, 5, 8)
    assert list(HUMANML3D_PARENTS) == [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14,
                                       16, 17, 18, 19]
    layout = feature_layout("humanml3d")
    assert [(s.start, s.stop) for s in layout.blocks().values()] == [
        (0, 1), (1, 3), (3, 4), (4, 67), (67, 193), (193, 259), (259, 263)]


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("features, message", [
    (np.zeros((10, 250)), re.escape("features must have 263 (HumanML3D) or 251 (KIT-ML) "
                                    "channels, got 250")),
    (np.zeros(263), r"shape \[..., T, C\]"),
    (np.zeros((0, 263)), "at least 1 frame"),
    (np.full((4, 263), np.nan), "NaN or infinite"),
    (torch.tensor([[np.inf] * 251]), "NaN or infinite"),
])
def test_recover_joints_rejects_bad_features(features, message):
    with pytest.raises(ValueError, match=message):
        recover_joints(features)


def test_joints_to_features_rejects_bad_joints(hml_motion):
    with pytest.raises(ValueError, match=r"shape \[T, 22, 3\] for humanml3d, got \(60, 21, 3\)"):
        joints_to_features(hml_motion[:, :21])
    with pytest.raises(ValueError, match=r"shape \[T, 21, 3\] for kit"):
        joints_to_features(hml_motion, dataset="kit")
    with pytest.raises(ValueError, match="at least 2 frames, got 1"):
        joints_to_features(hml_motion[:1])
    bad = hml_motion.copy()
    bad[3, 5, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first at index \(3, 5, 1\)\)"):
        joints_to_features(bad)
    with pytest.raises(ValueError, match="unknown dataset 'amass'"):
        joints_to_features(hml_motion, dataset="amass")
    collapsed = hml_motion.copy()
    collapsed[:, 4] = collapsed[:, 1]  # zero-length thigh
    with pytest.raises(ValueError, match="zero length"):
        joints_to_features(collapsed)
    with pytest.raises(ValueError, match="target_bone_lengths must have shape"):
        joints_to_features(hml_motion, target_bone_lengths=np.ones(21))


def test_forward_kinematics_rejects_bad_shapes():
    rotations = np.broadcast_to(np.eye(3), (5, 22, 3, 3))
    with pytest.raises(ValueError, match="local_rotations must have shape"):
        forward_kinematics(rotations[:, :21], np.zeros((5, 3)), HUMANML3D_TARGET_OFFSETS,
                           HUMANML3D_PARENTS)
    with pytest.raises(ValueError, match="root_positions must have shape"):
        forward_kinematics(rotations, np.zeros((4, 3)), HUMANML3D_TARGET_OFFSETS,
                           HUMANML3D_PARENTS)
    with pytest.raises(ValueError, match="offsets must have shape"):
        forward_kinematics(rotations, np.zeros((5, 3)), HUMANML3D_TARGET_OFFSETS[:21],
                           HUMANML3D_PARENTS)
    with pytest.raises(ValueError, match="parents"):
        forward_kinematics(rotations, np.zeros((5, 3)), HUMANML3D_TARGET_OFFSETS,
                           [0] + list(HUMANML3D_PARENTS[1:]))
