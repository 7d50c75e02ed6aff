"""HumanML3D motion features (the 263-dim ``new_joint_vecs``) and their KIT-ML 251-dim twin:
joint positions -> features (:func:`joints_to_features`, HumanML3D's ``process_file``) and
features -> joint positions (:func:`recover_joints`, HumanML3D's ``recover_from_ric``).

Layout for J joints (J = 22 HumanML3D -> 263 channels, J = 21 KIT-ML -> 251), per frame t::

    [0]                     root angular velocity about y (half-angle, radians / frame)
    [1:3]                   root linear velocity (x, z), in the root's facing frame
    [3]                     root height y
    [4 : 4+3(J-1)]          joints 1..J-1 positions relative to the root xz, in the facing
                            frame ("ric": rotation-invariant coordinates)
    [.. : ..+6(J-1)]        joints 1..J-1 local rotations, 6D (first two matrix columns)
    [.. : ..+3J]            velocities of all J joints x_{t+1} - x_t, in the facing frame of t
    [-4:]                   foot contacts: left ankle, left toe, right ankle, right toe
                            (HumanML3D joints 7, 10, 8, 11; KIT-ML 19, 20, 14, 15)

See :mod:`mate.data.skeleton` for the quaternion / 6D / kinematics conventions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from mate.data.skeleton import (
    HUMANML3D, KITML, SkeletonSpec, _cat, _inverse_kinematics_quaternions, _is_torch, _stack,
    bone_lengths, get_skeleton, qbetween, qinv, qmul, qrot, quaternion_to_cont6d,
)

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = [
    "HUMANML3D_FEATURE_DIM", "KITML_FEATURE_DIM", "FeatureLayout", "feature_layout",
    "recover_root", "recover_joints", "retarget_bone_lengths", "canonicalize_joints",
    "joints_to_features",
]

HUMANML3D_FEATURE_DIM = HUMANML3D.feature_dim  # 263
KITML_FEATURE_DIM = KITML.feature_dim          # 251


@dataclass(frozen=True)
class FeatureLayout:
    """Channel slices of the feature vector for ``num_joints`` joints (see the module doc)."""

    num_joints: int

    @property
    def width(self) -> int:
        """All channels: ``12 J - 1`` (:attr:`mate.data.skeleton.SkeletonSpec.feature_dim`)."""
        return self.foot_contacts.stop

    @property
    def root_angular_velocity(self) -> slice:
        return slice(0, 1)

    @property
    def root_linear_velocity(self) -> slice:
        return slice(1, 3)

    @property
    def root_height(self) -> slice:
        return slice(3, 4)

    @property
    def ric(self) -> slice:
        return slice(4, 4 + 3 * (self.num_joints - 1))

    @property
    def rotations(self) -> slice:
        start = self.ric.stop
        return slice(start, start + 6 * (self.num_joints - 1))

    @property
    def velocities(self) -> slice:
        start = self.rotations.stop
        return slice(start, start + 3 * self.num_joints)

    @property
    def foot_contacts(self) -> slice:
        return slice(self.velocities.stop, self.velocities.stop + 4)

    def blocks(self) -> dict[str, slice]:
        """All blocks by name, in channel order."""
        names = ("root_angular_velocity", "root_linear_velocity", "root_height", "ric",
                 "rotations", "velocities", "foot_contacts")
        return {name: getattr(self, name) for name in names}


def feature_layout(dataset: Union[str, SkeletonSpec, int] = "humanml3d") -> FeatureLayout:
    """:class:`FeatureLayout` of a dataset name ("humanml3d"/"kit") or a feature width (263/251)."""
    if isinstance(dataset, (int, np.integer)):
        return FeatureLayout(_spec_for_width(int(dataset)).num_joints)
    return FeatureLayout(get_skeleton(dataset).num_joints)


def _spec_for_width(width: int) -> SkeletonSpec:
    for spec in (HUMANML3D, KITML):
        if width == spec.feature_dim:
            return spec
    raise ValueError(f"features must have {HUMANML3D_FEATURE_DIM} (HumanML3D) or "
                     f"{KITML_FEATURE_DIM} (KIT-ML) channels, got {width}")


# --------------------------------------------------------------------------------------------
# Small numpy/torch helpers (the dispatch helpers _is_torch, _cat, _stack are skeleton's)
# --------------------------------------------------------------------------------------------

def _first_nonfinite(x: ArrayLike) -> Optional[tuple]:
    finite = torch.isfinite(x) if _is_torch(x) else np.isfinite(x)
    if bool(finite.all()):
        return None
    bad = torch.nonzero(~finite)[0].tolist() if _is_torch(x) else np.argwhere(~finite)[0].tolist()
    return tuple(bad)


def _validate_features(features) -> tuple[ArrayLike, SkeletonSpec]:
    if not _is_torch(features):
        features = np.asarray(features)
        if not np.issubdtype(features.dtype, np.floating):
            features = features.astype(np.float64)
    elif not features.is_floating_point():
        features = features.to(torch.get_default_dtype())
    if features.ndim < 2:
        raise ValueError(f"features must have shape [..., T, C] (frames by channels), got shape "
                         f"{tuple(features.shape)}")
    spec = _spec_for_width(int(features.shape[-1]))
    if features.shape[-2] < 1:
        raise ValueError("features must have at least 1 frame, got 0")
    bad = _first_nonfinite(features)
    if bad is not None:
        raise ValueError(f"features contain NaN or infinite values (first at index {bad})")
    return features, spec


def _rotate_y_inverse(angle, v):
    """Apply the inverse of the root rotation (cos a, 0, sin a, 0), i.e. a rotation by -2a about
    +y, to vectors ``v [..., 3]``; ``angle`` broadcasts against ``v[..., 0]``.

    R_y(θ) (x, y, z) = (x cos θ + z sin θ, y, -x sin θ + z cos θ), here with θ = -2a."""
    mod = torch if _is_torch(v) else np
    c, s = mod.cos(2.0 * angle), mod.sin(2.0 * angle)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return _stack([c * x - s * z, y, s * x + c * z], axis=-1)


# --------------------------------------------------------------------------------------------
# Features -> joints
# --------------------------------------------------------------------------------------------

def recover_root(features: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """Integrate the root channels of ``[..., T, 263|251]`` features.

    Returns:
        root_rotation: ``[..., T, 4]`` quaternions ``(cos a_t, 0, sin a_t, 0)`` with
            ``a_0 = 0`` and ``a_t = sum_{s<t} features[s, 0]`` (the features store half-angle
            increments, so the root has turned by ``2 a_t`` about y). This is HumanML3D's root
            rotation R_t: it maps world vectors into the facing frame.
        root_position: ``[..., T, 3]``: x, z integrate ``R_{t}^{-1} (v_x, 0, v_z)_{t-1}`` from 0
            (the stored velocity of frame t-1 is expressed in the facing frame of t); y is
            channel 3 (the root height).
    Same array kind and float dtype as ``features``; torch is differentiable.
    """
    features, _ = _validate_features(features)
    angle, root_position = _integrate_root(features)
    mod = torch if _is_torch(features) else np
    zero = 0.0 * angle
    return _stack([mod.cos(angle), zero, mod.sin(angle), zero], -1), root_position


def _integrate_root(features):
    """(a [..., T] half-angles, root positions [..., T, 3]) of validated features."""
    mod = torch if _is_torch(features) else np
    # a_0 = 0, a_t = sum of the half-angle steps of frames 0..t-1.
    angle = mod.cumsum(_cat([0.0 * features[..., :1, 0], features[..., :-1, 0]], -1), -1)
    # Root step t -> t+1 back in world axes: R_{t+1}^{-1} (v_x, 0, v_z)_t.
    velocity = features[..., :-1, 1:3]
    step = _stack([velocity[..., 0], 0.0 * velocity[..., 0], velocity[..., 1]], -1)
    step = _rotate_y_inverse(angle[..., 1:], step)
    zero = 0.0 * features[..., :1, 0]
    root_x = mod.cumsum(_cat([zero, step[..., 0]], -1), -1)
    root_z = mod.cumsum(_cat([zero, step[..., 2]], -1), -1)
    return angle, _stack([root_x, features[..., 3], root_z], -1)


def recover_joints(features: ArrayLike, *, extrapolate_final_frame: bool = False) -> ArrayLike:
    """Joint positions from features (HumanML3D's ``recover_from_ric``).

    Args:
        features: ``[..., T, 263]`` (HumanML3D, 22 joints, 20 fps) or ``[..., T, 251]`` (KIT-ML,
            21 joints, 12.5 fps); numpy or torch, any float dtype (integers are cast).
        extrapolate_final_frame: features of T frames are computed from T+1 poses; the last pose
            is only present through the last row's joint velocities. When True, append it
            (``x_T = x_{T-1} + R_{T-1}^{-1} v_{T-1}``), returning T+1 frames; running
            :func:`joints_to_features` on that output reproduces every block of the input,
            including the last rows (see the round-trip notes there).

    Returns:
        ``[..., T, J, 3]`` (``[..., T+1, J, 3]`` when extrapolating) world positions, y up, root
        starting at x = z = 0. numpy in -> numpy out (computed in float64, returned in the
        input's float dtype); torch in -> torch out, same dtype and device, differentiable.
        Joint 0 is the recovered root; joint j >= 1 is ``R_t^{-1} ric_j + (root_x, 0, root_z)``.

    On the released HumanML3D fixture 012314 this reproduces ``new_joints`` to 2.1e-7.

    Raises:
        ValueError: width not 263/251, fewer than 2 dims, no frames, NaN or inf.
    """
    features, spec = _validate_features(features)
    out_dtype = None
    if not _is_torch(features):
        out_dtype = np.result_type(features.dtype, np.float32)
        features = features.astype(np.float64)
    layout = FeatureLayout(spec.num_joints)
    angle, root_position = _integrate_root(features)
    ric = features[..., layout.ric]
    ric = ric.reshape(tuple(ric.shape[:-1]) + (spec.num_joints - 1, 3))
    joints = _rotate_y_inverse(angle[..., None], ric)
    root_xz = _stack([root_position[..., 0], 0.0 * root_position[..., 1], root_position[..., 2]],
                     -1)
    joints = joints + root_xz[..., None, :]
    joints = _cat([root_position[..., None, :], joints], -2)
    if extrapolate_final_frame:
        velocity = features[..., -1, layout.velocities]
        velocity = velocity.reshape(tuple(velocity.shape[:-1]) + (spec.num_joints, 3))
        last = joints[..., -1, :, :] + _rotate_y_inverse(angle[..., -1:], velocity)
        joints = _cat([joints, last[..., None, :, :]], -3)
    if out_dtype is not None:
        joints = joints.astype(out_dtype)
    return joints


# --------------------------------------------------------------------------------------------
# Joints -> features
# --------------------------------------------------------------------------------------------

def _validate_joints(joints, spec: SkeletonSpec, min_frames: int) -> tuple[np.ndarray, object]:
    """float64 numpy copy of ``joints`` plus a function restoring the caller's kind/dtype."""
    if _is_torch(joints):
        dtype = joints.dtype if joints.is_floating_point() else torch.get_default_dtype()
        device = joints.device
        array = joints.detach().cpu().numpy()

        def restore(x):
            return torch.as_tensor(x, dtype=dtype, device=device)
    else:
        array = np.asarray(joints)
        out_dtype = np.result_type(array.dtype, np.float32)

        def restore(x):
            return x.astype(out_dtype)
    if array.ndim != 3 or array.shape[1:] != (spec.num_joints, 3):
        raise ValueError(f"joints must have shape [T, {spec.num_joints}, 3] for {spec.name}, got "
                         f"{tuple(array.shape)}")
    if array.shape[0] < min_frames:
        raise ValueError(f"joints must have at least {min_frames} frames, got {array.shape[0]}")
    bad = _first_nonfinite(array)
    if bad is not None:
        raise ValueError(f"joints contain NaN or infinite values (first at index {bad})")
    return array.astype(np.float64), restore


def retarget_bone_lengths(joints: ArrayLike, target_bone_lengths: ArrayLike,
                          dataset: Union[str, SkeletonSpec] = "humanml3d") -> ArrayLike:
    """HumanML3D's ``uniform_skeleton``: keep every bone's direction, give it the target length.

    ``x'_0 = s x_0`` with ``s`` = target leg length / source leg length (the two leg bones of
    ``spec.leg_joints``, source lengths from frame 0), then ``x'_j = x'_{p(j)} + l_j (x_j -
    x_{p(j)}) / |x_j - x_{p(j)}|``. (HumanML3D does this by IK then FK with the target offsets,
    which is the same thing: its FK puts each bone along the IK's swing rotation of the rest
    direction, i.e. along the observed bone.)

    Args:
        joints: ``[T, J, 3]``; target_bone_lengths: ``[J]`` (entry 0 ignored), e.g.
            :data:`mate.data.skeleton.HUMANML3D_TARGET_BONE_LENGTHS`.
    Returns: ``[T, J, 3]``, same kind and float dtype as ``joints``.
    """
    spec = get_skeleton(dataset)
    pos, restore = _validate_joints(joints, spec, min_frames=1)
    return restore(_retarget(pos, spec, target_bone_lengths))


def _retarget(pos: np.ndarray, spec: SkeletonSpec, target_bone_lengths) -> np.ndarray:
    target = np.asarray(
        target_bone_lengths.detach().cpu().numpy() if _is_torch(target_bone_lengths)
        else target_bone_lengths, dtype=np.float64)
    if target.shape != (spec.num_joints,):
        raise ValueError(f"target_bone_lengths must have shape [{spec.num_joints}], got "
                         f"{target.shape}")
    if not np.all(np.isfinite(target)) or np.any(target[1:] <= 0):
        raise ValueError("target_bone_lengths must be finite and positive (entry 0 is ignored)")
    parents = spec.parents
    source = bone_lengths(pos[0], parents)
    leg_a, leg_b = spec.leg_joints
    if source[leg_a] + source[leg_b] <= 0:
        raise ValueError("cannot retarget: the source leg has zero length in frame 0")
    scale = (target[leg_a] + target[leg_b]) / (source[leg_a] + source[leg_b])
    out = np.empty_like(pos)
    out[:, 0] = pos[:, 0] * scale
    for j in range(1, len(parents)):
        bone = pos[:, j] - pos[:, parents[j]]
        length = np.linalg.norm(bone, axis=-1, keepdims=True)
        if np.any(length < 1e-9):
            raise ValueError(f"cannot retarget: bone ending at joint {j} has zero length at "
                             f"frame {int(np.argmin(length[:, 0]))}")
        out[:, j] = out[:, parents[j]] + target[j] * bone / length
    return out


def _canonicalize(pos: np.ndarray, spec: SkeletonSpec) -> np.ndarray:
    """Floor, first root xz at the origin, first frame facing +Z (HumanML3D's process_file)."""
    pos = pos.copy()
    # Put on the floor: the lowest joint over the whole clip touches y = 0.
    pos[..., 1] -= pos[..., 1].min()
    # Move the first frame's root to x = z = 0.
    pos -= pos[0, 0] * np.array([1.0, 0.0, 1.0])
    # Face +Z: across = (r_hip - l_hip) + (r_shoulder - l_shoulder) points to the body's right,
    # forward = ŷ × across; rotate the whole clip about y so frame 0's forward is +Z.
    r_hip, l_hip, r_sdr, l_sdr = spec.face_joints
    first = pos[0]
    across = (first[r_hip] - first[l_hip]) + (first[r_sdr] - first[l_sdr])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    norm = np.linalg.norm(forward)
    if norm < 1e-9 * max(np.linalg.norm(across), 1e-300) or norm < 1e-12:
        raise ValueError("cannot determine the facing direction of frame 0: the hip/shoulder "
                         "across vector is vertical or zero")
    to_z = qbetween(forward / norm, np.array([0.0, 0.0, 1.0]))
    return qrot(np.broadcast_to(to_z, pos.shape[:-1] + (4,)), pos)


def canonicalize_joints(joints: ArrayLike, dataset: Union[str, SkeletonSpec] = "humanml3d", *,
                        target_bone_lengths: Optional[ArrayLike] = None) -> ArrayLike:
    """The positions :func:`joints_to_features` actually encodes, ``[T, J, 3]`` -> ``[T, J, 3]``:
    optionally retargeted (``target_bone_lengths``), put on the floor (minimum y over all joints
    and frames = 0), first root moved to x = z = 0, rotated about y so that the first frame
    faces +Z (forward = ŷ × ((r_hip - l_hip) + (r_shoulder - l_shoulder))).
    ``recover_joints(joints_to_features(J))`` equals ``canonicalize_joints(J)[:-1]``.
    Same kind and float dtype as ``joints``."""
    spec = get_skeleton(dataset)
    pos, restore = _validate_joints(joints, spec, min_frames=1)
    if target_bone_lengths is not None:
        pos = _retarget(pos, spec, target_bone_lengths)
    return restore(_canonicalize(pos, spec))


def joints_to_features(joints: ArrayLike, dataset: Union[str, SkeletonSpec] = "humanml3d", *,
                       feet_threshold: Optional[float] = None,
                       forward_smoothing_sigma: float = 20.0,
                       target_bone_lengths: Optional[ArrayLike] = None) -> ArrayLike:
    """HumanML3D features of a clip (HumanML3D's ``process_file``), ``[T, J, 3] -> [T-1, C]``.

    Args:
        joints: ``[T, J, 3]`` joint positions, y up, T >= 2; J = 22 for ``dataset="humanml3d"``
            (-> C = 263), 21 for ``"kit"`` (-> C = 251). numpy (returned in the input's float
            dtype, float32 stays float32) or torch (returned as a tensor of the same dtype and
            device; not differentiable, computed in float64 numpy).
        dataset: "humanml3d" or "kit" (or a :class:`~mate.data.skeleton.SkeletonSpec`).
        feet_threshold: a foot joint is in contact at frame t when its squared displacement
            ``|x_{t+1} - x_t|^2`` is below this (HumanML3D 0.002 m^2 at 20 fps, the default;
            KIT-ML default 0.05 mm^2). HumanML3D's code also defines foot *height* factors but
            never applies them (commented out), so contacts use velocity only, as here.
        forward_smoothing_sigma: Gaussian sigma, in frames, for smoothing the facing direction
            that defines the root rotation (HumanML3D: 20). 0 disables (not HumanML3D's data).
        target_bone_lengths: ``[J]`` bone lengths to retarget onto first (HumanML3D's
            ``uniform_skeleton``); the release used the skeleton of clip 000021, available as
            :data:`~mate.data.skeleton.HUMANML3D_TARGET_BONE_LENGTHS`. Default None *skips*
            retargeting and encodes the input's own bones: joints recovered from released
            features (already retargeted), and synthetic motions built by FK with
            ``HUMANML3D_TARGET_OFFSETS``, need none; raw AMASS/SMPL joints do to be comparable
            with the released data (and with its Mean/Std).

    Returns:
        ``[T-1, C]`` features in the layout of this module's docstring (channel slices in
        :func:`feature_layout`). Row t describes frame t (and t -> t+1 for velocities/contacts).

    Processing (each step as in HumanML3D, verified against the released fixture 012314):
      1. optional retargeting; 2. :func:`canonicalize_joints` (floor, origin, face +Z);
      3. foot contacts; 4. root rotation R_t (``skeleton.root_facing_rotations``: facing from
         shoulders minus hips, smoothed with sigma 20, R_0 forced to identity; these quirks
         are reproduced because the released data has them) and inverse kinematics (local
         rotations -> 6D, joints 1..J-1); 5. root angular velocity
         ``arcsin(y of R_{t+1} R_t^{-1})``, root linear velocity ``R_{t+1}(r_{t+1} - r_t)``
         (x, z), root height; 6. ric ``R_t (x_j - (r_x, 0, r_z))``; 7. joint velocities
         ``R_t (x_{t+1} - x_t)``.

    Round trips (measured; tested in tests/test_features.py):
      * ``recover_joints(joints_to_features(J)) == canonicalize_joints(J)[:-1]`` to ~1e-12
        (float64): exact, because R_0 = I makes the recovered root rotation equal R_t.
      * On the released fixture F (170 x 263), ``joints_to_features(recover_joints(F,
        extrapolate_final_frame=True))`` reproduces all 170 rows of F: root, ric and velocity
        blocks to <= 3.1e-7, rotations to <= 2.1e-6 (float32 noise in the release's IK), foot
        contacts exactly.
      * Without the extrapolated final pose (``joints_to_features(recover_joints(F))``, 169
        rows) the clip is one frame shorter, so the facing smoothing (kernel radius 80 frames,
        edge padding) sees a different last frame. Rows 0..T-82 (0..88 on the fixture) are
        unaffected and match as above; in the last 80 rows root height and foot contacts stay
        exact while the others drift by up to (fixture): angular velocity 3.0e-4, linear
        velocity 1.4e-4, ric 6.8e-3, rotations 1.3e-2, velocities 4.1e-4.

    Raises:
        ValueError: wrong shape or joint count, fewer than 2 frames, NaN or inf, unknown
            dataset, a zero-length bone, or an undefined facing direction.
    """
    # Long mostly for its docstring; the body is HumanML3D's process_file step by step, kept in
    # one piece so that it reads against the reference code.
    spec = get_skeleton(dataset)
    pos, restore = _validate_joints(joints, spec, min_frames=2)
    threshold = spec.default_feet_threshold if feet_threshold is None else float(feet_threshold)
    if target_bone_lengths is not None:
        pos = _retarget(pos, spec, target_bone_lengths)
    pos = _canonicalize(pos, spec)
    num_frames, num_joints = pos.shape[:2]

    # Foot contacts: squared displacement between consecutive frames below the threshold.
    def contacts(foot):
        step = pos[1:, list(foot)] - pos[:-1, list(foot)]
        return ((step ** 2).sum(-1) < threshold).astype(np.float64)

    foot_contacts = np.concatenate([contacts(spec.left_foot), contacts(spec.right_foot)], -1)

    # Root rotation R_t (slot 0) and local joint rotations (slots 1..J-1).
    quats = _inverse_kinematics_quaternions(pos, spec, forward_smoothing_sigma)
    root_rot = quats[:, 0]
    rotations_6d = quaternion_to_cont6d(quats[:, 1:]).reshape(num_frames, -1)

    # Root: angular velocity (half-angle of R_{t+1} R_t^{-1}, a rotation about y), linear
    # velocity in the facing frame of t+1, height.
    relative = qmul(root_rot[1:], qinv(root_rot[:-1]))
    angular_velocity = np.arcsin(np.clip(relative[:, 2], -1.0, 1.0))[:, None]
    linear_velocity = qrot(root_rot[1:], pos[1:, 0] - pos[:-1, 0])[:, [0, 2]]

    # Rotation-invariant coordinates: subtract the root's xz, rotate into the facing frame.
    local = pos - pos[:, :1] * np.array([1.0, 0.0, 1.0])
    local = qrot(np.broadcast_to(root_rot[:, None], local.shape[:-1] + (4,)), local)
    root_height = local[:, 0, 1:2]
    ric = local[:, 1:].reshape(num_frames, -1)

    # Joint velocities x_{t+1} - x_t in the facing frame of t.
    step = pos[1:] - pos[:-1]
    velocities = qrot(np.broadcast_to(root_rot[:-1, None], step.shape[:-1] + (4,)), step)
    velocities = velocities.reshape(num_frames - 1, -1)

    features = np.concatenate([
        angular_velocity, linear_velocity, root_height[:-1], ric[:-1], rotations_6d[:-1],
        velocities, foot_contacts], axis=-1)
    assert features.shape == (num_frames - 1, spec.feature_dim)
    bad = _first_nonfinite(features)
    if bad is not None:  # should be unreachable: every division above is guarded
        raise ValueError(f"feature computation produced a non-finite value at {bad}")
    return restore(features)
