"""Skeletons of HumanML3D (22 joints) and KIT-ML (21 joints), rotation utilities, and forward /
inverse kinematics with the exact conventions of the HumanML3D processing code.

Conventions used throughout (all identical to HumanML3D's ``common/quaternion.py``):

* Coordinates: y is up; a canonical HumanML3D motion starts at the origin facing +Z.
* Quaternions are ``(w, x, y, z)``, real part first, shape ``[..., 4]``. They act as *active*
  rotations: ``qrot(q, v)`` rotates the vector ``v``; ``qmul(q, r)`` is the Hamilton product, the
  rotation that applies ``r`` first and then ``q``.
* Rotation matrices ``[..., 3, 3]`` act on column vectors, ``v' = R @ v``.
* The continuous 6D rotation representation is the first two *columns* of the matrix,
  concatenated: ``[R[:, 0], R[:, 1]]`` (HumanML3D's ``quaternion_to_cont6d``). The inverse
  (``cont6d_to_matrix``) is Gram-Schmidt: ``x = a / |a|``, ``z = (x × b) / |x × b|``,
  ``y = z × x``.

Every rotation helper accepts numpy arrays or torch tensors and returns the same kind (numpy in,
numpy out; torch in, torch out on the same device, differentiable). ``inverse_kinematics`` is
numpy only (float64) because its facing-direction smoothing is a numpy filter.

Kinematic convention (HumanML3D's ``Skeleton.forward_kinematics_cont6d``)
--------------------------------------------------------------------------
Each joint ``j >= 1`` has a bone from its parent ``p(j)`` to ``j``; ``offsets[j]`` is that bone in
the rest pose (HumanML3D: ``raw_offsets[j] * bone_length[j]``, where ``raw_offsets[j]`` is a unit
axis vector). The local rotation ``L_j`` of joint ``j`` rotates *the bone that ends at j* (not the
bones leaving j). Global rotations ``G`` and positions ``x`` are::

    G_0 = L_0                                  x_0 = root_position
    G_j = G_{c(j)} @ L_j                       x_j = x_{p(j)} + G_j @ offsets[j]

where ``c(j)``, the *rotation parent*, is usually ``p(j)`` but restarts at the root where HumanML3D
starts a new kinematic chain: HumanML3D walks chains (``[0,2,5,8,11], [0,1,4,7,10],
[0,3,6,9,12,15], [9,14,17,19,21], [9,13,16,18,20]``) and every chain starts again from the root
rotation, so the collar joints 13 and 14 (whose parent is the spine joint 9) are rotated by
``G_0 @ L_j``, not ``G_9 @ L_j``. The rule that reproduces this from a parent list: the
lowest-index child of a joint continues its chain (``c(j) = p(j)``); every other child of a
non-root joint starts a new chain (``c(j) = 0``). See :func:`rotation_parents`.

Inverse kinematics (HumanML3D's ``Skeleton.inverse_kinematics_np``) recovers, for every joint, the
*swing-only* global rotation ``G_j = qbetween(raw_offsets[j], x_j - x_{p(j)})`` (the smallest
rotation taking the rest direction onto the bone: twist about the bone is not observable from
positions and is zero), the root rotation ``G_0 = R_t`` (the facing rotation, below), and
``L_j = G_{c(j)}^{-1} G_j``. Hence ``forward_kinematics(inverse_kinematics(J), J[:, 0], offsets,
parents) == J`` whenever ``offsets`` has J's bone lengths, and the 6D block of
``mate.data.features.joints_to_features`` is ``matrix_to_cont6d`` of exactly these ``L_j``
(joints 1..J-1). Rotations produced any other way (with twist, or with a different root
rotation) give the same positions but a different 6D block: to get HumanML3D-consistent 6D
features from a synthetic motion, run ``joints_to_features`` on its FK positions.
Because the swing is measured from fixed world-axis rest directions, these local rotations are
not invariant to turning the body about y (rotating a pose changes its IK rotations, not only
the root's); the features only remove the global yaw of the whole clip, by facing frame 0 along
+Z before IK.

The root rotation ``R_t`` of HumanML3D is ``qbetween(forward_t, +Z)``: it maps the body's forward
direction onto +Z, i.e. it is the *inverse* of the body heading (world -> facing frame). It is
computed from an "across" vector, smoothed over time, and frame 0 is forced to the identity; see
:func:`root_facing_rotations` for the exact recipe and its quirks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = [
    "HUMANML3D_PARENTS", "HUMANML3D_RAW_OFFSETS", "HUMANML3D_KINEMATIC_CHAINS",
    "HUMANML3D_FACE_JOINTS", "HUMANML3D_LEFT_FOOT", "HUMANML3D_RIGHT_FOOT",
    "HUMANML3D_TARGET_BONE_LENGTHS", "HUMANML3D_TARGET_OFFSETS",
    "KITML_PARENTS", "KITML_RAW_OFFSETS", "KITML_KINEMATIC_CHAINS", "KITML_FACE_JOINTS",
    "KITML_LEFT_FOOT", "KITML_RIGHT_FOOT",
    "SkeletonSpec", "HUMANML3D", "KITML", "get_skeleton",
    "qnormalize", "qinv", "qmul", "qrot", "qbetween", "quaternion_to_matrix",
    "matrix_to_quaternion", "axis_angle_to_quaternion", "axis_angle_to_matrix",
    "matrix_to_cont6d", "cont6d_to_matrix", "quaternion_to_cont6d",
    "rotation_parents", "kinematic_chains", "bone_lengths", "forward_kinematics",
    "root_facing_rotations", "inverse_kinematics", "gaussian_smooth_nearest",
]

# --------------------------------------------------------------------------------------------
# Skeleton constants
# --------------------------------------------------------------------------------------------

#: HumanML3D / SMPL 22-joint body: 0 pelvis, 1 l_hip, 2 r_hip, 3 spine1, 4 l_knee, 5 r_knee,
#: 6 spine2, 7 l_ankle, 8 r_ankle, 9 spine3, 10 l_foot, 11 r_foot, 12 neck, 13 l_collar,
#: 14 r_collar, 15 head, 16 l_shoulder, 17 r_shoulder, 18 l_elbow, 19 r_elbow, 20 l_wrist,
#: 21 r_wrist.
HUMANML3D_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

#: Rest direction of the bone ending at each joint (HumanML3D's ``t2m_raw_offsets``); the rest
#: pose stands facing +Z with the person's left on +X and the arms hanging down.
HUMANML3D_RAW_OFFSETS: np.ndarray = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
    [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
    [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]], dtype=np.float64)

#: HumanML3D's ``t2m_kinematic_chain`` (each chain restarts from the root rotation).
HUMANML3D_KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20))

#: Facing joints in HumanML3D's order (r_hip, l_hip, r_shoulder, l_shoulder).
HUMANML3D_FACE_JOINTS: tuple[int, int, int, int] = (2, 1, 17, 16)
#: Foot-contact joints (ankle, toe); the 263-dim contacts are left (7, 10) then right (8, 11).
HUMANML3D_LEFT_FOOT: tuple[int, int] = (7, 10)
HUMANML3D_RIGHT_FOOT: tuple[int, int] = (8, 11)

#: Bone lengths (metres) of HumanML3D's target skeleton, the one every released motion was
#: retargeted onto by ``uniform_skeleton`` (the skeleton of clip 000021). Entry j is the length of
#: the bone from parent(j) to j; entry 0 is 0. Measured on the released ``new_joints/012314.npy``,
#: where every bone is constant over all frames to 1.3e-6.
HUMANML3D_TARGET_BONE_LENGTHS: np.ndarray = np.array([
    0.0, 0.1030740, 0.1098834, 0.1315682, 0.3936232, 0.3901882, 0.1431902, 0.4324330, 0.4256434,
    0.0573647, 0.1433818, 0.1494191, 0.2193600, 0.1374868, 0.1433828, 0.1030392, 0.1316140,
    0.1229844, 0.2568399, 0.2630919, 0.2660118, 0.2698763], dtype=np.float64)

#: Rest-pose bone vectors of the target skeleton, ``[22, 3]`` float64: the ``offsets`` argument
#: of :func:`forward_kinematics` for HumanML3D-sized motions.
HUMANML3D_TARGET_OFFSETS: np.ndarray = (
    HUMANML3D_RAW_OFFSETS * HUMANML3D_TARGET_BONE_LENGTHS[:, None])

#: KIT-ML 21-joint body (MMM): 0 root, 1-4 torso/neck/head chain, 5-7 one arm, 8-10 the other,
#: 11-15 one leg, 16-20 the other (HumanML3D's ``kit_kinematic_chain``).
KITML_PARENTS: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 3, 5, 6, 3, 8, 9, 0, 11, 12, 13, 14, 0, 16, 17, 18, 19)

#: HumanML3D's ``kit_raw_offsets``.
KITML_RAW_OFFSETS: np.ndarray = np.array([
    [0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0],
    [-1, 0, 0], [0, -1, 0], [0, -1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, 1],
    [-1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, 1]], dtype=np.float64)

KITML_KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10))

#: Facing joints (r_hip, l_hip, r_shoulder, l_shoulder) as used by the KIT-ML processing.
KITML_FACE_JOINTS: tuple[int, int, int, int] = (11, 16, 5, 8)
#: KIT-ML foot-contact joints: the 251-dim contacts are "left" (19, 20) then "right" (14, 15).
KITML_LEFT_FOOT: tuple[int, int] = (19, 20)
KITML_RIGHT_FOOT: tuple[int, int] = (14, 15)


@dataclass(frozen=True, eq=False)
class SkeletonSpec:
    """The fixed facts of one dataset: its skeleton, for the feature pipeline, and its motion
    representation (frame rate, feature width, length unit, standard clip lengths).

    Attributes:
        name: canonical dataset name ("humanml3d" or "kit").
        parents: ``parents[j]`` is the parent joint of j; ``parents[0] == -1``; parents precede
            children.
        raw_offsets: ``[J, 3]`` float64 unit rest directions of the bone ending at each joint.
        face_joints: (r_hip, l_hip, r_shoulder, l_shoulder) indices for the facing direction.
        left_foot, right_foot: (ankle, toe) indices; contacts are ordered left then right.
        leg_joints: the two joints whose bones make up the leg length HumanML3D's
            ``uniform_skeleton`` uses to scale the root trajectory (knee and ankle bones).
        fps: frame rate of the released features.
        default_feet_threshold: squared per-frame foot displacement below which a foot is "in
            contact" (HumanML3D: 0.002 m^2 at 20 fps).
        unit: length unit of the joint positions ("m" HumanML3D, "mm" KIT-ML).
        min_frames, max_frames: the standard length filter keeps clips of T feature frames
            with ``min_frames <= T < max_frames`` (HumanML3D 40 and 200, KIT-ML 24 and 200).
        crop_frames: kept clips longer than this are cropped to it (196 for both).

    This is the one home of the per-dataset facts: :mod:`mate.data.dataset` (its
    ``DATASET_SPECS``, length filter and crop defaults) and :mod:`mate.data.synthetic` (frame
    rate, feature width, motion lengths) read them from here.
    """

    name: str
    parents: tuple[int, ...]
    raw_offsets: np.ndarray
    face_joints: tuple[int, int, int, int]
    left_foot: tuple[int, int]
    right_foot: tuple[int, int]
    leg_joints: tuple[int, int]
    fps: float
    default_feet_threshold: float
    unit: str
    min_frames: int
    max_frames: int
    crop_frames: int

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def feature_dim(self) -> int:
        """Feature width: 4 root + 3(J-1) ric + 6(J-1) rotations + 3J velocities + 4 contacts."""
        return 12 * self.num_joints - 1


HUMANML3D = SkeletonSpec(
    name="humanml3d", parents=HUMANML3D_PARENTS, raw_offsets=HUMANML3D_RAW_OFFSETS,
    face_joints=HUMANML3D_FACE_JOINTS, left_foot=HUMANML3D_LEFT_FOOT,
    right_foot=HUMANML3D_RIGHT_FOOT, leg_joints=(5, 8), fps=20.0, default_feet_threshold=0.002,
    unit="m", min_frames=40, max_frames=200, crop_frames=196)

# KIT-ML joints are in millimetres; 0.05 is the threshold used by public KIT-ML processing scripts
# (not verified against a released KIT-ML feature file: there is no KIT motion fixture).
KITML = SkeletonSpec(
    name="kit", parents=KITML_PARENTS, raw_offsets=KITML_RAW_OFFSETS,
    face_joints=KITML_FACE_JOINTS, left_foot=KITML_LEFT_FOOT, right_foot=KITML_RIGHT_FOOT,
    leg_joints=(17, 18), fps=12.5, default_feet_threshold=0.05, unit="mm", min_frames=24,
    max_frames=200, crop_frames=196)

_SKELETON_ALIASES = {
    "humanml3d": HUMANML3D, "humanml": HUMANML3D, "hml3d": HUMANML3D, "t2m": HUMANML3D,
    "kit": KITML, "kitml": KITML, "kit-ml": KITML, "kit_ml": KITML,
}


def get_skeleton(dataset: Union[str, SkeletonSpec]) -> SkeletonSpec:
    """Return the :class:`SkeletonSpec` for ``"humanml3d"`` (aliases humanml, hml3d, t2m) or
    ``"kit"`` (aliases kitml, kit-ml, kit_ml); a ``SkeletonSpec`` is returned unchanged."""
    if isinstance(dataset, SkeletonSpec):
        return dataset
    spec = _SKELETON_ALIASES.get(str(dataset).lower())
    if spec is None:
        raise ValueError(f"unknown dataset {dataset!r}: expected 'humanml3d' or 'kit'")
    return spec


# --------------------------------------------------------------------------------------------
# numpy / torch dispatch
# --------------------------------------------------------------------------------------------

def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _stack(xs, axis: int):
    return torch.stack(xs, dim=axis) if _is_torch(xs[0]) else np.stack(xs, axis=axis)


def _cat(xs, axis: int):
    return torch.cat(xs, dim=axis) if _is_torch(xs[0]) else np.concatenate(xs, axis=axis)


def _cross(a, b):
    if _is_torch(a):
        a, b = torch.broadcast_tensors(a, b)
        return torch.linalg.cross(a, b, dim=-1)
    return np.cross(a, b, axis=-1)


def _norm(x, keepdim: bool = True):
    if _is_torch(x):
        return torch.linalg.vector_norm(x, dim=-1, keepdim=keepdim)
    return np.linalg.norm(x, axis=-1, keepdims=keepdim)


def _sqrt(x):
    return torch.sqrt(x) if _is_torch(x) else np.sqrt(x)


def _where(cond, a, b):
    return torch.where(cond, a, b) if _is_torch(cond) else np.where(cond, a, b)


def _like(x, ref):
    """``x`` converted to the array kind (and, for torch, dtype/device) of ``ref``."""
    if _is_torch(ref):
        return torch.as_tensor(np.asarray(x) if not _is_torch(x) else x,
                               dtype=ref.dtype, device=ref.device)
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _float_array(x):
    """numpy/torch input as a floating array (integers become float64 / torch default)."""
    if _is_torch(x):
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Quaternions and rotation representations
# --------------------------------------------------------------------------------------------

def qnormalize(q: ArrayLike) -> ArrayLike:
    """Unit quaternions ``[..., 4]`` (same kind and dtype as ``q``)."""
    return q / _norm(q)


def qinv(q: ArrayLike) -> ArrayLike:
    """Conjugate ``(w, -x, -y, -z)`` of ``q`` ``[..., 4]``: the inverse of a unit quaternion."""
    return _cat([q[..., :1], -q[..., 1:]], axis=-1)


def qmul(q: ArrayLike, r: ArrayLike) -> ArrayLike:
    """Hamilton product ``q ⊗ r`` of ``[..., 4]`` quaternions (broadcasting): rotate by r, then q.

    (w1 + v1)(w2 + v2) = (w1 w2 - v1·v2) + (w1 v2 + w2 v1 + v1 × v2).
    """
    w1, x1, y1, z1 = (q[..., i] for i in range(4))
    w2, x2, y2, z2 = (r[..., i] for i in range(4))
    return _stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], axis=-1)


def qrot(q: ArrayLike, v: ArrayLike) -> ArrayLike:
    """Rotate vectors ``v`` ``[..., 3]`` by unit quaternions ``q`` ``[..., 4]`` (broadcasting).

    v' = v + 2 w (u × v) + 2 u × (u × v), with u the vector part of q.
    """
    u = q[..., 1:]
    uv = _cross(u, v)
    uuv = _cross(u, uv)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def qbetween(v0: ArrayLike, v1: ArrayLike) -> ArrayLike:
    """Smallest rotation taking direction ``v0`` onto direction ``v1`` (both ``[..., 3]``, any
    length, broadcasting), as unit quaternions ``[..., 4]``.

    q ∝ (|v0||v1| + v0·v1, v0 × v1), HumanML3D's ``qbetween``. For exactly opposite vectors that
    formula is 0/0; there we return the half turn about an axis perpendicular to v0 (v0 × x̂, or
    v0 × ŷ when v0 is along x̂), so that a horizontal v0 always gets a rotation about y.
    """
    ref = v0 if _is_torch(v0) else v1
    v0, v1 = _like(v0, ref), _like(v1, ref)
    if _is_torch(v0):
        v0, v1 = torch.broadcast_tensors(v0, v1)
    else:
        v0, v1 = np.broadcast_arrays(v0, v1)
    scale = _norm(v0) * _norm(v1)                      # |v0||v1|, [..., 1]
    dot = (v0 * v1).sum(-1)[..., None]
    q = _cat([scale + dot, _cross(v0, v1)], axis=-1)
    q_norm = _norm(q)
    # Antiparallel fallback: a half turn (w = 0) about a unit axis perpendicular to v0.
    perp_x = _cross(v0, _like(np.array([1.0, 0.0, 0.0]), v0))
    perp_y = _cross(v0, _like(np.array([0.0, 1.0, 0.0]), v0))
    perp = _where(_norm(perp_x) > 0.1 * _norm(v0), perp_x, perp_y)
    half_turn = _cat([0.0 * scale, perp / _norm(perp).clip(min=1e-30)], axis=-1)
    degenerate = q_norm <= 1e-12 * scale
    return _where(degenerate, half_turn, q / _where(degenerate, 1.0 + 0.0 * q_norm, q_norm))


def quaternion_to_matrix(q: ArrayLike) -> ArrayLike:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` (need not be unit: the
    formula divides by |q|^2, like HumanML3D's ``quaternion_to_matrix``)."""
    w, x, y, z = (q[..., i] for i in range(4))
    s = 2.0 / (q * q).sum(-1)
    rows = [
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ]
    m = _stack(rows, axis=-1)
    return m.reshape(tuple(q.shape[:-1]) + (3, 3))


def matrix_to_quaternion(m: ArrayLike) -> ArrayLike:
    """Unit quaternions ``[..., 4]`` with ``w >= 0`` of rotation matrices ``[..., 3, 3]``.

    Shepperd's method: of the four candidate pivots 4w², 4x², 4y², 4z² (from the trace and the
    diagonal) use the largest, which keeps the division well conditioned.
    """
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    m01, m02, m10 = m[..., 0, 1], m[..., 0, 2], m[..., 1, 0]
    m12, m20, m21 = m[..., 1, 2], m[..., 2, 0], m[..., 2, 1]
    # Candidate (unnormalised) quaternions, each exact when its pivot is the largest.
    cand_w = _stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1)
    cand_x = _stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1)
    cand_y = _stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1)
    cand_z = _stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1)
    pivots = _stack([cand_w[..., 0], cand_x[..., 1], cand_y[..., 2], cand_z[..., 3]], -1)
    best = pivots.argmax(-1)[..., None]
    q = _where(best == 0, cand_w, _where(best == 1, cand_x, _where(best == 2, cand_y, cand_z)))
    q = qnormalize(q)
    return _where(q[..., :1] < 0, -q, q)


def axis_angle_to_quaternion(axis_angle: ArrayLike) -> ArrayLike:
    """Unit quaternions ``[..., 4]`` of rotation vectors ``[..., 3]`` (axis times angle, radians):
    ``(cos(θ/2), sin(θ/2) axis)``, with the small-angle limit handled by sinc."""
    theta = _norm(axis_angle)
    half = 0.5 * theta
    if _is_torch(axis_angle):
        k = 0.5 * torch.sinc(half / torch.pi)  # sin(θ/2)/θ, finite at θ = 0
        return torch.cat([torch.cos(half), k * axis_angle], -1)
    k = 0.5 * np.sinc(half / np.pi)
    return np.concatenate([np.cos(half), k * axis_angle], -1)


def axis_angle_to_matrix(axis_angle: ArrayLike) -> ArrayLike:
    """Rotation matrices ``[..., 3, 3]`` of rotation vectors ``[..., 3]`` (radians)."""
    return quaternion_to_matrix(axis_angle_to_quaternion(axis_angle))


def matrix_to_cont6d(m: ArrayLike) -> ArrayLike:
    """6D representation ``[..., 6]`` = first two columns ``[m[..., :, 0], m[..., :, 1]]``."""
    return _cat([m[..., :, 0], m[..., :, 1]], axis=-1)


def quaternion_to_cont6d(q: ArrayLike) -> ArrayLike:
    """6D representation ``[..., 6]`` of quaternions ``[..., 4]`` (HumanML3D's
    ``quaternion_to_cont6d``)."""
    return matrix_to_cont6d(quaternion_to_matrix(q))


def cont6d_to_matrix(d6: ArrayLike) -> ArrayLike:
    """Rotation matrices ``[..., 3, 3]`` from 6D ``[..., 6]`` by Gram-Schmidt:
    ``x = a/|a|``, ``z = (x × b)/|x × b|``, ``y = z × x``; columns ``[x, y, z]``."""
    a, b = d6[..., 0:3], d6[..., 3:6]
    x = a / _norm(a)
    z = _cross(x, b)
    z = z / _norm(z)
    y = _cross(z, x)
    return _stack([x, y, z], axis=-1)


# --------------------------------------------------------------------------------------------
# Kinematics
# --------------------------------------------------------------------------------------------

def _check_parents(parents: Sequence[int]) -> tuple[int, ...]:
    parents = tuple(int(p) for p in parents)
    if len(parents) == 0 or parents[0] != -1:
        raise ValueError(f"parents[0] must be -1 (the root), got parents={list(parents)}")
    for j, p in enumerate(parents[1:], start=1):
        if not 0 <= p < j:
            raise ValueError(
                f"parents must list each joint after its parent (0 <= parents[j] < j); "
                f"joint {j} has parent {p}")
    return parents


def rotation_parents(parents: Sequence[int]) -> tuple[int, ...]:
    """The joint whose global rotation each joint's local rotation is composed onto.

    ``c(j) = p(j)`` when j is the lowest-index child of p(j) (it continues p(j)'s kinematic
    chain) or p(j) is the root; otherwise ``c(j) = 0`` (j starts a new chain, which in HumanML3D
    starts again from the root rotation). ``c(0) = -1``.
    HumanML3D: joints 13 and 14 (collars, parent 9) get 0; KIT-ML: joints 5 and 8 (parent 3).
    """
    parents = _check_parents(parents)
    first_child: dict[int, int] = {}
    for j, p in enumerate(parents[1:], start=1):
        first_child.setdefault(p, j)
    return tuple(-1 if j == 0 else (p if (p == 0 or first_child[p] == j) else 0)
                 for j, p in enumerate(parents))


def kinematic_chains(parents: Sequence[int]) -> list[list[int]]:
    """HumanML3D-style kinematic chains from a parent list: each chain starts at the root or at a
    branching joint and follows lowest-index children; returns e.g. HumanML3D's
    ``t2m_kinematic_chain`` (up to chain order) for :data:`HUMANML3D_PARENTS`."""
    parents = _check_parents(parents)
    children: dict[int, list[int]] = {}
    for j, p in enumerate(parents[1:], start=1):
        children.setdefault(p, []).append(j)
    chains = []
    for j, p in enumerate(parents):
        # A chain starts at every child that does not continue its parent's chain.
        if j == 0 or (p != 0 and children[p][0] == j):
            continue
        chain = [p, j]
        while chain[-1] in children:
            chain.append(children[chain[-1]][0])
        chains.append(chain)
    return chains


def bone_lengths(joints: ArrayLike, parents: Sequence[int]) -> ArrayLike:
    """Lengths ``[..., J]`` of the bones ending at each joint of ``joints`` ``[..., J, 3]``
    (entry 0, the root, is 0). Same kind/dtype as ``joints``."""
    parents = _check_parents(parents)
    idx = [max(p, 0) for p in parents]
    bones = joints - joints[..., idx, :]
    return _norm(bones, keepdim=False)


def forward_kinematics(local_rotations: ArrayLike, root_positions: ArrayLike,
                       offsets: ArrayLike, parents: Sequence[int]) -> ArrayLike:
    """Joint positions from local rotations, HumanML3D's ``forward_kinematics_cont6d`` convention.

    Args:
        local_rotations: ``[T, J, 3, 3]`` rotation matrices (leading batch dims allowed:
            ``[..., T, J, 3, 3]``), numpy or torch, float32/float64. ``[..., 0, :, :]`` is the
            root rotation G_0; ``[..., j, :, :]`` (j >= 1) is L_j, which rotates the bone that
            *ends* at joint j. 6D features convert with :func:`cont6d_to_matrix`.
        root_positions: ``[T, 3]`` (``[..., T, 3]``) root joint positions.
        offsets: ``[J, 3]`` rest-pose bone vectors (``raw_offsets * bone_lengths[:, None]``;
            row 0 is ignored), e.g. :data:`HUMANML3D_TARGET_OFFSETS`.
        parents: length-J parent list, ``parents[0] == -1``, parents before children.

    Returns:
        ``[T, J, 3]`` (``[..., T, J, 3]``) joint positions, same kind and dtype as
        ``local_rotations``::

            G_0 = L_0,  G_j = G_{c(j)} @ L_j,  x_0 = root,  x_j = x_{p(j)} + G_j @ offsets[j]

        with c = :func:`rotation_parents` (HumanML3D's chains restart from the root rotation).
    """
    parents = _check_parents(parents)
    num_joints = len(parents)
    rot = _float_array(local_rotations)
    if rot.ndim < 3 or tuple(rot.shape[-3:]) != (num_joints, 3, 3):
        raise ValueError(f"local_rotations must have shape [..., T, {num_joints}, 3, 3] for "
                         f"{num_joints} parents, got {tuple(rot.shape)}")
    root = _like(_float_array(root_positions), rot)
    if tuple(root.shape) != tuple(rot.shape[:-3]) + (3,):
        raise ValueError(f"root_positions must have shape {tuple(rot.shape[:-3]) + (3,)} to match "
                         f"local_rotations {tuple(rot.shape)}, got {tuple(root.shape)}")
    off = _like(_float_array(offsets), rot)
    if tuple(off.shape) != (num_joints, 3):
        raise ValueError(f"offsets must have shape [{num_joints}, 3], got {tuple(off.shape)}")
    rot_parent = rotation_parents(parents)
    global_rot = [rot[..., 0, :, :]]
    positions = [root]
    for j in range(1, num_joints):
        g = global_rot[rot_parent[j]] @ rot[..., j, :, :]
        global_rot.append(g)
        positions.append(positions[parents[j]] + (g @ off[j][:, None])[..., 0])
    return _stack(positions, axis=-2)


# --------------------------------------------------------------------------------------------
# Facing direction and inverse kinematics (numpy, float64)
# --------------------------------------------------------------------------------------------

def gaussian_smooth_nearest(x: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian filter along ``axis`` with edge ("nearest") padding: the same result as
    ``scipy.ndimage.gaussian_filter1d(x, sigma, axis, mode="nearest")`` (truncate 4.0, kernel
    radius ``int(4 sigma + 0.5)``), without depending on scipy. float64 numpy in and out.
    ``sigma <= 0`` returns ``x`` unchanged."""
    x = np.asarray(x, dtype=np.float64)
    if sigma <= 0:
        return x
    radius = int(4.0 * float(sigma) + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    moved = np.moveaxis(x, axis, 0)
    padded = np.concatenate([np.repeat(moved[:1], radius, 0), moved,
                             np.repeat(moved[-1:], radius, 0)], 0)
    # Sliding windows [T, ..., 2r+1] dotted with the (symmetric) kernel.
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0)
    return np.moveaxis(windows @ kernel, 0, axis)


def _unit_rows(v: np.ndarray, what: str) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        bad = np.argwhere(n[..., 0] < 1e-12)[0]
        raise ValueError(f"cannot normalise {what}: zero-length vector at index {tuple(bad)}")
    return v / n


def root_facing_rotations(joints: np.ndarray, dataset: Union[str, SkeletonSpec] = "humanml3d",
                          forward_smoothing_sigma: float = 20.0) -> np.ndarray:
    """HumanML3D's root rotation ``R_t`` per frame, ``[T, 4]`` float64 unit quaternions about +y.

    Exactly the recipe that produced the released features (verified on the fixture 012314):

    1. across_t = (x[l_hip] - x[r_hip]) + (x[r_shoulder] - x[l_shoulder]), with
       (r_hip, l_hip, r_shoulder, l_shoulder) = ``face_joints``. Note the hip term's sign: it is
       the *opposite* of the one used to face the first frame along +Z (HumanML3D's IK unpacks
       the facing joints in a different order), so this "across" is shoulders minus hips; it
       points to the body's right as long as the shoulders are wider than the hips.
    2. forward_t = ŷ × across_t / |across_t|, Gaussian-smoothed over time (sigma 20 frames,
       edge padding; ``forward_smoothing_sigma=0`` disables), then normalised.
    3. R_t = qbetween(forward_t, +Z) (world -> facing frame, the inverse of the heading).
    4. R_0 = identity: the release forced the first frame's root rotation to the identity, which
       makes feature 0 of the first frame the facing angle of frame 1 rather than a velocity.

    Args:
        joints: ``[T, J, 3]`` positions (float; computed in float64).
    """
    spec = get_skeleton(dataset)
    pos = np.asarray(joints, dtype=np.float64)
    r_hip, l_hip, r_sdr, l_sdr = spec.face_joints
    across = (pos[:, l_hip] - pos[:, r_hip]) + (pos[:, r_sdr] - pos[:, l_sdr])
    across = _unit_rows(across, "the facing (across) vector")
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    forward = gaussian_smooth_nearest(forward, forward_smoothing_sigma, axis=0)
    forward = _unit_rows(forward, "the forward direction (the across vector is vertical)")
    rot = qbetween(forward, np.array([0.0, 0.0, 1.0]))
    rot[0] = (1.0, 0.0, 0.0, 0.0)
    return rot


def _inverse_kinematics_quaternions(joints: np.ndarray, spec: SkeletonSpec,
                                    forward_smoothing_sigma: float) -> np.ndarray:
    """``[T, J, 4]`` float64: slot 0 the root rotation R_t, slot j the local L_j (see module)."""
    pos = np.asarray(joints, dtype=np.float64)
    parents = spec.parents
    rot_parent = rotation_parents(parents)
    root = root_facing_rotations(pos, spec, forward_smoothing_sigma)
    bones = pos[:, 1:] - pos[:, list(parents[1:])]
    lengths = np.linalg.norm(bones, axis=-1)
    if np.any(lengths < 1e-9):
        t, j = np.argwhere(lengths < 1e-9)[0]
        raise ValueError(f"bone ending at joint {j + 1} has zero length at frame {t}; inverse "
                         f"kinematics needs distinct joint positions")
    # Swing-only global rotation of each bone: rest direction -> observed direction.
    global_rot = np.empty(pos.shape[:2] + (4,))
    global_rot[:, 0] = root
    global_rot[:, 1:] = qbetween(spec.raw_offsets[None, 1:], bones)
    local = np.empty_like(global_rot)
    local[:, 0] = root
    for j in range(1, len(parents)):
        local[:, j] = qmul(qinv(global_rot[:, rot_parent[j]]), global_rot[:, j])
    return local


def inverse_kinematics(joints: ArrayLike, dataset: Union[str, SkeletonSpec] = "humanml3d",
                       forward_smoothing_sigma: float = 20.0) -> np.ndarray:
    """Local rotations ``[T, J, 3, 3]`` (float64 numpy) of joint positions ``[T, J, 3]``,
    HumanML3D's ``inverse_kinematics_np``: slot 0 is the root rotation R_t of
    :func:`root_facing_rotations`; slot j is ``L_j = G_{c(j)}^{-1} G_j`` with the swing-only
    ``G_j = qbetween(raw_offsets[j], x_j - x_{p(j)})``. Feeding the result to
    :func:`forward_kinematics` with ``joints[:, 0]`` and offsets of the same bone lengths gives
    ``joints`` back."""
    spec = get_skeleton(dataset)
    pos = _float_array(joints)
    if _is_torch(pos):
        pos = pos.detach().cpu().numpy()
    if pos.ndim != 3 or pos.shape[1:] != (spec.num_joints, 3):
        raise ValueError(f"joints must have shape [T, {spec.num_joints}, 3] for {spec.name}, "
                         f"got {tuple(pos.shape)}")
    return quaternion_to_matrix(_inverse_kinematics_quaternions(pos, spec, forward_smoothing_sigma))
