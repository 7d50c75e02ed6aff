"""Synthetic compositional text-motion benchmark, written in the HumanML3D layout.

``python -m mate.data.synthetic --out DIR --motions N --seed S`` writes a complete dataset that the
real loaders (``mate.data.dataset.MotionTextDataset``) read unchanged::

    DIR/new_joint_vecs/<id>.npy   (T, 263) float32 HumanML3D features at 20 fps, 40 <= T <= 196
    DIR/new_joints/<id>.npy       (T, 22, 3) float32 = recover_joints(features) (as HumanML3D's)
    DIR/texts/<id>.txt            3 (sometimes 4) captions, one a line:
                                  ``caption#lemma/UPOS lemma/UPOS ...#0.0#0.0``
    DIR/Mean.npy, DIR/Std.npy     (263,) float32 statistics of the train split (see below)
    DIR/train.txt val.txt test.txt all.txt   ids, one a line (80 / 5 / 15 %, seeded)
    DIR/segments.json             ground truth of every caption (see below)

Why it exists: every motion is a time sequence of 1-4 *segments*, each one action (or one
locomotion with a simultaneous wave), and the captions are built from the same segment list, so
the ground-truth sub-texts and their frame boundaries are known exactly. The action inventory is
full of antonym pairs that a sentence-level encoder blurs and a word-level one must separate:
left/right, clockwise/counterclockwise, forward/backward, up/down, quickly/slowly, raise/lower,
sit down/stand up.

Motions
-------
Motions are posed by *local joint rotations* on the 22-joint HumanML3D skeleton (the target
skeleton's bone lengths, :data:`mate.data.skeleton.HUMANML3D_TARGET_OFFSETS`) and placed by
:func:`mate.data.skeleton.forward_kinematics`, so bone lengths are exactly constant. The root is
moved by the legs: each frame one foot is the stance foot (the gait's stance leg, else the lower
foot) and the pelvis moves opposite to that foot's motion relative to the pelvis, so a planted
foot does not skate; the root height keeps the lowest foot joint on the ground (plus the stair
level and the flight of jumps). Walking = alternating leg swing, the stance sweep carrying the
root along the facing direction; turning = root yaw while stepping in place; circles = walking
while the yaw turns a full 2π; stairs = high knee lifts while the floor level rises or falls one
16 cm step per step; jumps = crouch, ballistic flight, landing.
The joint positions then go through :func:`mate.data.features.joints_to_features` (HumanML3D's
processing: floor, centre, face +Z, IK, velocities, foot contacts), and ``new_joints`` is
:func:`mate.data.features.recover_joints` of those features, exactly as the released HumanML3D
``new_joints`` files are. The 6D block of the features is therefore HumanML3D's (swing-only IK
rotations relative to the smoothed inverse heading), *not* the 6D of the rotations that posed the
motion: HumanML3D's IK cannot see twist and uses a different root rotation, so only running
``joints_to_features`` gives a 6D block consistent with real HumanML3D features.

Coordinate conventions (HumanML3D's): y is up, the motion starts at the origin facing +Z, the
person's left is +X. A yaw rotation by +θ about +y turns the facing direction from +Z towards +X,
i.e. to the person's *left*; seen from above (looking down the -y axis) that is
**counterclockwise**. So: "turn left" = positive yaw rate, "turn right" = negative;
"walk in a circle counterclockwise" = walk forward while turning left (positive yaw rate), the
root path seen from above goes counterclockwise; "clockwise" = negative yaw rate. (HumanML3D's
feature 0 stores the rotation velocity of the *inverse* heading, so its sign is the opposite:
feature 0 > 0 means turning right / clockwise.)

Each action lasts 1-3 s (20-60 frames; circles 1.5-3 s) with speed "quick" (shorter, faster),
"normal" or "slow" (longer, slower); the motion is 40..196 frames (the HumanML3D filter keeps
40 <= T < 200 and crops to 196). The inventory (:data:`ACTIONS`):

* locomotion: walk_forward / walk_backward, jog, run, walk_upstairs / walk_downstairs,
  sidestep_left / sidestep_right, circle_counterclockwise / circle_clockwise;
* turns: turn_left / turn_right (90°), turn_around (180°, either way);
* whole body: jump, jump_forward, squat, kick_left_leg / kick_right_leg;
* arms (also while seated): raise_left_hand / raise_right_hand / raise_both_arms and their
  lower_* antonyms (the arm stays up in between), wave_left_hand / wave_right_hand (also
  simultaneously with walking, turning, circling or side-stepping: one "while" segment);
* posture: sit_down / stand_up (seated in between: only arm actions).

Left/right and clockwise/counterclockwise versions are exact mirror images (x -> -x) of one
rendering; quick/slow change the step rate and amplitude of gaits, and the duration (hence
speed) of everything else. HumanML3D's mirrored "M" copies are not produced.

Captions
--------
Every caption of a motion describes the same segments with a different surface form: subject
("a person", "someone", "the man", ...), synonyms per action, speed adverbs, and connectors
("then", "and then", "after that", "and finally", ...), including reordering ones whose text
order differs from the time order ("X before Y-ing" is time X, Y; "before Y-ing, X" is also time
X, Y; "Y after X-ing"; "Y, but before that X") and "while" for simultaneity ("waves his right hand
while walking forward" is ONE segment with both actions). Tokens follow HumanML3D's
``process_text``: only alphabetic words, NOUN and VERB as lemmas ("walks" -> walk/VERB, "stairs"
-> stair/NOUN), every other word as written with its universal POS tag (left/ADJ, quickly/ADV,
his/DET); hyphens are removed first ("counter-clockwise" -> counterclockwise/ADV). The generator
knows every word's lemma and POS from its templates; no tagger is involved.

segments.json
-------------
``{id: [{"caption", "subtexts", "bounds_frames", "actions", "speeds", "text_order",
"spans"}, ...]}``
with one entry per caption line, in the same order as the text file:

* ``subtexts[k]``: the caption substring that describes segment k, segments in **time order**
  (``caption[spans[k][0]:spans[k][1]] == subtexts[k]``);
* ``bounds_frames``: ``[0, b_1, ..., T]`` strictly increasing feature-frame boundaries, segment k
  is frames ``[bounds[k], bounds[k+1])``; ``len(bounds) == len(subtexts) + 1``;
* ``actions[k]``: the action names of segment k (two for a "while" segment);
* ``speeds[k]``: "quick", "normal" or "slow";
* ``text_order``: segment indices in the order their sub-texts appear in the caption.

Mean/Std
--------
Over the train split, like HumanML3D's ``mean_variance``: the per-dimension population std is
averaged within each feature group (root rotation velocity, root linear velocity, root height,
positions, 6D rotations, velocities, foot contacts) and then floored at :data:`STD_FLOOR`
(HumanML3D's group averaging already keeps std away from zero on real data; the floor only guards
tiny synthetic sets where a whole group can be constant, e.g. no foot ever leaves the ground).

(HumanML3D computed its statistics over all released motions; here only the train split
contributes, so evaluation data stays unseen.)

Determinism: motion ``i`` depends only on ``(seed, i)`` (its generators are spawned from
``numpy.random.SeedSequence([seed, i])``), statistics are accumulated in id order, so files are
byte-identical for the same seed whatever the number of worker processes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from mate.data import skeleton as _skel

__all__ = [
    "FPS", "FEATURE_DIM", "NUM_JOINTS", "MIN_FRAMES", "MAX_FRAMES", "MIN_ACTION_FRAMES",
    "MAX_ACTION_FRAMES", "STD_FLOOR", "ACTIONS", "MIRROR_JOINTS", "NEUTRAL_BONE_ROTATIONS",
    "ActionSpec", "Segment", "MotionPlan", "CaptionRecord", "SyntheticMotion", "DatasetSummary",
    "euler_to_matrix", "pose_to_local_rotations", "plan_motion", "render_motion",
    "motion_from_plan", "generate_captions", "generate_motion", "feature_statistics", "split_ids",
    "motion_id", "write_dataset", "main",
]

FPS = 20
FEATURE_DIM = 263
NUM_JOINTS = 22
#: HumanML3D keeps motions with 40 <= T < 200 feature frames and crops to 196.
MIN_FRAMES = 40
MAX_FRAMES = 196
#: Lower bound of every Std entry (after HumanML3D's per-group averaging).
STD_FLOOR = 1e-3
#: Shortest action (1 s) and longest (3 s), in frames.
MIN_ACTION_FRAMES = 20
MAX_ACTION_FRAMES = 60
#: Fractions of the train / val / test splits (HumanML3D: 23384 / 1460 / 4384 of 29228).
SPLIT_FRACTIONS = (0.80, 0.05, 0.15)
#: About 44,970 captions for 14,616 motions in HumanML3D: 3 per motion, a 4th with this chance.
FOURTH_CAPTION_PROBABILITY = 44970 / 14616 - 3.0

PARENTS = _skel.HUMANML3D_PARENTS
OFFSETS = _skel.HUMANML3D_TARGET_OFFSETS  # [22, 3] float64, bone lengths of HumanML3D's target

# --------------------------------------------------------------------------------------------
# Joints (HumanML3D / SMPL order). The pose is authored per *joint* in the usual sense: the
# rotation of joint j turns everything below j (hip flexion turns thigh, shin and foot). Body
# frame: x = the person's left, y = up, z = forward.
# --------------------------------------------------------------------------------------------
PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3 = range(10)
L_FOOT, R_FOOT, NECK, L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER = range(10, 18)
L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = range(18, 22)
#: joint -> its mirror image across the sagittal plane (x -> -x).
MIRROR_JOINTS = np.array([0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18,
                          21, 20])
SPINE_JOINTS = (SPINE1, SPINE2, SPINE3)
#: Joints whose action deltas are suppressed while that arm is held up (raise/lower state).
ARM_JOINTS = {"left": (L_COLLAR, L_SHOULDER, L_ELBOW, L_WRIST),
              "right": (R_COLLAR, R_SHOULDER, R_ELBOW, R_WRIST)}
LEG_JOINTS = {"left": (L_HIP, L_KNEE, L_ANKLE), "right": (R_HIP, R_KNEE, R_ANKLE)}
FOOT_JOINTS = {"left": (L_ANKLE, L_FOOT), "right": (R_ANKLE, R_FOOT)}

# Neutral direction (body frame) of the bone ending at each joint. HumanML3D's raw offsets are
# axis vectors (hips sideways, the collar->shoulder bone and the arms straight down, the head bone
# and the feet straight forward); a real standing HumanML3D frame has hips down-and-out, shoulders
# out to the side, the head up and the toes below the ankles (measured on the fixture 012314).
# These directions give the rest pose that shape; they do not propagate to child bones.
_NEUTRAL_LEFT_BONES = {
    L_HIP: (0.60, -0.80, 0.0),
    L_KNEE: (0.15, -1.0, 0.03),
    L_ANKLE: (-0.05, -1.0, -0.04),
    L_FOOT: (0.22, -0.35, 0.91),
    L_COLLAR: (0.35, 0.93, 0.05),
    L_SHOULDER: (0.96, -0.08, 0.15),
    L_ELBOW: (0.12, -1.0, 0.0),
    L_WRIST: (0.02, -0.95, 0.30),
}
_NEUTRAL_CENTRE_BONES = {
    SPINE1: (0.0, 1.0, -0.18),
    SPINE2: (0.0, 0.95, 0.30),
    SPINE3: (0.0, 0.60, 0.80),
    NECK: (0.0, 0.97, 0.10),
    HEAD: (0.0, 0.80, 0.60),
}


def _neutral_bone_rotations() -> np.ndarray:
    """``[22, 3, 3]`` float64: N_j = smallest rotation taking raw_offsets[j] onto the neutral
    direction of bone j (identity for the root)."""
    target = {**_NEUTRAL_CENTRE_BONES, **_NEUTRAL_LEFT_BONES}
    for j, v in _NEUTRAL_LEFT_BONES.items():
        target[int(MIRROR_JOINTS[j])] = (-v[0], v[1], v[2])
    rotations = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for j, direction in target.items():
        q = _skel.qbetween(_skel.HUMANML3D_RAW_OFFSETS[j], np.asarray(direction, dtype=np.float64))
        rotations[j] = _skel.quaternion_to_matrix(q)
    return rotations


NEUTRAL_BONE_ROTATIONS = _neutral_bone_rotations()
_ROTATION_PARENTS = _skel.rotation_parents(PARENTS)


# --------------------------------------------------------------------------------------------
# Rotation helpers (float64 numpy)
# --------------------------------------------------------------------------------------------

def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(a.shape + (3, 3))


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(a.shape + (3, 3))


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(a.shape + (3, 3))


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """Joint rotations ``[..., 3, 3]`` float64 from Euler angles ``[..., 3]`` (x, y, z) radians:
    ``R = Rx(x) @ Rz(z) @ Ry(y)``: twist about the bone (y) first, then abduction about the
    forward axis (z), then flexion about the left axis (x), each in the parent's frame.

    With the rest bones pointing along ±y this reads: legs/arms ``x < 0`` swing forward, left
    ``z > 0`` moves the limb out to the left; spine ``x > 0`` leans forward; knee ``x > 0`` bends
    the shin back; ankle ``x > 0`` points the toes down. Mirroring (x -> -x) maps (x, y, z) to
    (x, -y, -z) because ``M R M`` with ``M = diag(-1, 1, 1)`` keeps x-rotations and reverses the
    y- and z-rotations.
    """
    return _rot_x(angles[..., 0]) @ _rot_z(angles[..., 2]) @ _rot_y(angles[..., 1])


def pose_to_local_rotations(angles: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """HumanML3D local rotations ``[T, 22, 3, 3]`` float64 of an authored pose.

    Args:
        angles: ``[T, 22, 3]`` Euler angles (see :func:`euler_to_matrix`); ``angles[:, j]`` turns
            the subtree below joint j (``angles[:, 0]`` the whole body, after the yaw).
        yaw: ``[T]`` heading in radians about +y (positive = turned to the left).

    The authored pose has global joint rotations ``A_0 = Ry(yaw) E_0``, ``A_j = A_{p(j)} E_j``
    and bone ``p(j) -> j`` pointing along ``A_{p(j)} N_j raw_offsets[j]`` (N_j: the neutral
    bone rotation). In the convention of :func:`mate.data.skeleton.forward_kinematics` (L_j turns
    the bone that *ends* at j, chains restart from the root) that bone's global rotation is
    ``G_j = A_{p(j)} N_j`` and ``L_j = G_{c(j)}^T G_j`` (``c`` = rotation parent), ``L_0 = A_0``.
    """
    num_frames = angles.shape[0]
    joint_rot = euler_to_matrix(angles)
    authored = np.empty_like(joint_rot)
    authored[:, 0] = _rot_y(yaw) @ joint_rot[:, 0]
    for j in range(1, NUM_JOINTS):
        authored[:, j] = authored[:, PARENTS[j]] @ joint_rot[:, j]
    bone_global = np.empty_like(joint_rot)
    bone_global[:, 0] = authored[:, 0]
    bone_global[:, 1:] = authored[:, list(PARENTS[1:])] @ NEUTRAL_BONE_ROTATIONS[1:]
    local = np.empty_like(joint_rot)
    local[:, 0] = bone_global[:, 0]
    rp = list(_ROTATION_PARENTS[1:])
    local[:, 1:] = np.swapaxes(bone_global[:, rp], -1, -2) @ bone_global[:, 1:]
    assert local.shape == (num_frames, NUM_JOINTS, 3, 3)
    return local


# --------------------------------------------------------------------------------------------
# Time profiles
# --------------------------------------------------------------------------------------------

def _smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 on x clipped to [0, 1]: 0 -> 1 with zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _ramp(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """Smooth 0 -> 1 between times ``start`` and ``end``."""
    if end <= start:
        return (t >= start).astype(np.float64)
    return _smoothstep((t - start) / (end - start))


def _pulse(s: np.ndarray, rise_end: float, fall_start: float, start: float = 0.0,
           end: float = 1.0) -> np.ndarray:
    """0 -> 1 over [start, rise_end], 1 over [rise_end, fall_start], 1 -> 0 over
    [fall_start, end] (smoothstep edges); s is normalised time."""
    return _ramp(s, start, rise_end) * (1.0 - _ramp(s, fall_start, end))


def _envelope(num_frames: int, ramp_frames: int = 5) -> np.ndarray:
    """``[num_frames + 1]`` amplitude envelope: 0 at both ends, 1 in the middle, smooth ramps of
    ``ramp_frames`` (at most a third of the clip). Actions multiply their joint deltas by it, so
    every action starts and ends in the resting (or held) pose and segments join continuously."""
    t = np.arange(num_frames + 1, dtype=np.float64)
    ramp = max(1.0, min(float(ramp_frames), num_frames / 3.0))
    return _ramp(t, 0.0, ramp) * (1.0 - _ramp(t, num_frames - ramp, float(num_frames)))


def _keyframes(s: np.ndarray, times: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """Smoothstep interpolation through (time, value) keys (normalised time, increasing)."""
    out = np.full_like(s, float(values[0]))
    for (t0, v0), (t1, v1) in zip(zip(times[:-1], values[:-1]), zip(times[1:], values[1:])):
        out = np.where(s >= t0, v0 + (v1 - v0) * _ramp(s, t0, t1), out)
    return out


# --------------------------------------------------------------------------------------------
# Clips: what one action contributes over its frames
# --------------------------------------------------------------------------------------------

@dataclass
class _Clip:
    """One action over ``n`` frames, sampled at ``n + 1`` instants (both ends included).

    angles: ``[n+1, 22, 3]`` Euler deltas added to the held pose (0 at both ends);
    yaw, ground: ``[n+1]`` heading / floor-level change since the clip start (radians / metres);
    lift: ``[n+1]`` extra root height (flight of a jump); push: ``[n+1, 2]`` extra body-frame
    root displacement (x, z) from frame t to t+1 beyond what the stance foot gives;
    stance: ``[n+1]`` +1 = the left foot carries the body, -1 = the right, 0 = whichever foot is
    lower (gaits know their stance phase; the lowest-foot rule would misread a swing foot that
    dips while its knee bends);
    state: absolute tracks ``[n+1]`` of the held state ("arm_left", "arm_right" elevation in
    [0, 1], "seated" in [0, 1]) for the actions that change it.
    """

    angles: np.ndarray
    yaw: np.ndarray
    ground: np.ndarray
    lift: np.ndarray
    push: np.ndarray
    stance: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def zeros(cls, n: int) -> "_Clip":
        return cls(np.zeros((n + 1, NUM_JOINTS, 3)), np.zeros(n + 1), np.zeros(n + 1),
                   np.zeros(n + 1), np.zeros((n + 1, 2)), np.zeros(n + 1))

    @property
    def frames(self) -> int:
        return self.yaw.shape[0] - 1

    def mirrored(self) -> "_Clip":
        """The mirror image across the sagittal plane: left and right joints swap, y- and
        z-rotations, yaw and sideways displacement change sign, the arm states swap."""
        angles = self.angles[:, MIRROR_JOINTS] * np.array([1.0, -1.0, -1.0])
        state = {{"arm_left": "arm_right", "arm_right": "arm_left"}.get(k, k): v
                 for k, v in self.state.items()}
        return _Clip(angles, -self.yaw, self.ground.copy(), self.lift.copy(),
                     self.push * np.array([-1.0, 1.0]), -self.stance, state)

    def held(self, total: int) -> "_Clip":
        """This clip followed by a still hold of its final pose up to ``total`` frames."""
        extra = total - self.frames
        if extra <= 0:
            return self
        pad = lambda a: np.concatenate([a, np.repeat(a[-1:], extra, 0)], 0)  # noqa: E731
        push = np.concatenate([self.push, np.zeros((extra, 2))], 0)
        lift = np.concatenate([self.lift, np.zeros(extra)], 0)
        stance = np.concatenate([self.stance, np.zeros(extra)], 0)
        return _Clip(pad(self.angles), pad(self.yaw), pad(self.ground), lift, push, stance,
                     {k: pad(v) for k, v in self.state.items()})


def _flat_feet(angles: np.ndarray, sides: Iterable[str] = ("left", "right")) -> None:
    """Keep the feet level with the pelvis (in place): ankle_x = -(hip_x + knee_x), so the foot's
    pitch in the pelvis frame is unchanged by hip and knee flexion (x-rotations add up along the
    leg when abduction is small)."""
    for side in sides:
        hip, knee, ankle = LEG_JOINTS[side]
        angles[:, ankle, 0] -= angles[:, hip, 0] + angles[:, knee, 0]


@dataclass(frozen=True)
class _Style:
    """Per-motion variation (a different 'performer' per motion)."""

    amplitude: float = 1.0
    cadence: float = 1.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "_Style":
        return cls(amplitude=float(rng.uniform(0.9, 1.1)), cadence=float(rng.uniform(0.92, 1.08)))


# Speed multipliers of cyclic actions (step frequency, amplitude) and wave frequency.
_CADENCE_SCALE = {"quick": 1.4, "normal": 1.0, "slow": 0.6}
_AMPLITUDE_SCALE = {"quick": 1.15, "normal": 1.0, "slow": 0.75}
_DEG = math.pi / 180.0


def _gait(n: int, *, cadence: float, hip: float, knee: float, direction: float = 1.0,
          swing_hip: float = 0.0, arm: float = 0.0, elbow: float = 0.0, lean: float = 0.0,
          bounce: float = 0.0, glide: float = 0.0) -> tuple[_Clip, np.ndarray]:
    """Cyclic stepping over ``n`` frames; returns the clip and its phase ``[n+1]``.

    Phase φ advances by π per step (``cadence`` steps per second), scaled by the envelope so the
    gait starts and stops smoothly: φ(t) = direction · π · cadence/FPS · Σ env. Left hip flexion
    = hip·sin φ (the legs in antiphase), so the left leg swings forward while cos φ > 0 and the
    right while cos φ < 0 (for either direction; direction = -1 is walking backwards, the time
    reverse of walking forwards). The swinging leg's knee bends by knee·max(0, ±cos φ)^2 and its
    hip flexes by an extra swing_hip (stairs, marching); arms swing opposite to the legs.
    With the stance-foot rule of :func:`render_motion` the pelvis advances 2·L·sin(hip) per step
    (L = leg length), i.e. about 1 m/s for a normal walk. ``glide`` (m/s) adds forward travel
    beyond the stance sweep (the flight phases of jogging and running).
    """
    env = _envelope(n, 5)
    phase = np.concatenate([[0.0], np.cumsum(env[:-1])]) * (direction * math.pi * cadence / FPS)
    s, c = np.sin(phase), np.cos(phase)
    swing_left, swing_right = np.clip(c, 0, None) ** 2, np.clip(-c, 0, None) ** 2
    clip = _Clip.zeros(n)
    a = clip.angles
    a[:, L_HIP, 0] = -(hip * s + swing_hip * swing_left) * env
    a[:, R_HIP, 0] = -(-hip * s + swing_hip * swing_right) * env
    a[:, L_KNEE, 0] = knee * swing_left * env
    a[:, R_KNEE, 0] = knee * swing_right * env
    a[:, L_SHOULDER, 0] = arm * s * env
    a[:, R_SHOULDER, 0] = -arm * s * env
    a[:, L_ELBOW, 0] = a[:, R_ELBOW, 0] = -elbow * env
    for j in SPINE_JOINTS:
        a[:, j, 0] = lean / 3.0 * env
    _flat_feet(a)
    clip.lift = bounce * np.abs(s) * env
    clip.push[:, 1] = glide / FPS * env
    # The left leg swings while cos φ > 0, so the right one carries the body then.
    clip.stance = np.where(c > 0, -1.0, 1.0)
    return clip, phase


# ---- renderers: (frames, speed, style, rng) -> _Clip, canonical ("left") version -------------

def _walk(n, speed, style, rng, direction=1.0):
    k, amp = _CADENCE_SCALE[speed] * style.cadence, _AMPLITUDE_SCALE[speed] * style.amplitude
    base = 1.8 if direction > 0 else 1.5
    hip = (20.0 if direction > 0 else 16.0) * _DEG * amp
    # Backwards, the swinging leg starts in front: it needs extra hip flexion to clear the floor.
    swing_hip = (0.0 if direction > 0 else 15.0) * _DEG * amp
    clip, _ = _gait(n, cadence=base * k, hip=hip, knee=55 * _DEG * amp, direction=direction,
                    swing_hip=swing_hip, arm=15 * _DEG * amp, elbow=15 * _DEG, lean=3 * _DEG)
    return clip


def _walk_backward(n, speed, style, rng):
    return _walk(n, speed, style, rng, direction=-1.0)


def _jog(n, speed, style, rng):
    clip, _ = _gait(n, cadence=2.6 * style.cadence, hip=28 * _DEG * style.amplitude,
                    knee=85 * _DEG, arm=25 * _DEG, elbow=80 * _DEG, lean=8 * _DEG, bounce=0.03,
                    glide=0.8)
    return clip


def _run(n, speed, style, rng):
    clip, _ = _gait(n, cadence=3.1 * style.cadence, hip=36 * _DEG * style.amplitude,
                    knee=105 * _DEG, arm=35 * _DEG, elbow=90 * _DEG, lean=12 * _DEG, bounce=0.06,
                    glide=1.5)
    return clip


def _stairs(n, speed, style, rng, rise_per_step=0.16):
    """Climbing: small stance sweep (tread ~0.3 m), big swing lifts, the floor rises one step
    height per step (linearly in phase) so the root rises with the feet."""
    k, amp = _CADENCE_SCALE[speed] * style.cadence, _AMPLITUDE_SCALE[speed]
    up = rise_per_step > 0
    clip, phase = _gait(n, cadence=1.5 * k, hip=11 * _DEG * amp,
                        swing_hip=(32 if up else 18) * _DEG * amp,
                        knee=(75 if up else 50) * _DEG * amp, arm=10 * _DEG, elbow=15 * _DEG,
                        lean=(8 if up else 2) * _DEG)
    clip.ground = rise_per_step * np.abs(phase) / math.pi
    return clip


def _walk_downstairs(n, speed, style, rng):
    return _stairs(n, speed, style, rng, rise_per_step=-0.16)


def _march(n, cadence):
    """Stepping in place (for turns): knees lift, no stance sweep, so no translation."""
    clip, _ = _gait(n, cadence=cadence, hip=0.0, swing_hip=22 * _DEG, knee=45 * _DEG,
                    arm=6 * _DEG, elbow=12 * _DEG)
    return clip


def _turn_left(n, speed, style, rng, angle=math.pi / 2):
    """Yaw +angle (to the left, counterclockwise from above) with a smoothstep profile while
    stepping in place."""
    clip = _march(n, 1.7 * style.cadence)
    s = np.linspace(0.0, 1.0, n + 1)
    clip.yaw = angle * _smoothstep(s)
    return clip


def _turn_around(n, speed, style, rng):
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return _turn_left(n, speed, style, rng, angle=sign * math.pi)


def _circle_counterclockwise(n, speed, style, rng):
    """A full circle: walk forward while the heading turns +2π (left) at a rate proportional to
    the gait envelope, so the path closes into a loop seen counterclockwise from above."""
    clip = _walk(n, speed, style, rng)
    env = _envelope(n, 5)
    progress = np.concatenate([[0.0], np.cumsum(env[:-1])])
    clip.yaw = 2.0 * math.pi * progress / progress[-1]
    return clip


def _sidestep_left(n, speed, style, rng):
    """Side steps to the left. One cycle (phase 0..2π): both hips abduct by A(1 - cos φ)/2 (legs
    spread, then close); the left knee lifts while sin φ > 0 (left foot travels), the right while
    sin φ < 0. With the stance-foot rule the pelvis moves left in both halves: 2·L·sin A per
    cycle."""
    k, amp = _CADENCE_SCALE[speed] * style.cadence, _AMPLITUDE_SCALE[speed] * style.amplitude
    env = _envelope(n, 5)
    phase = np.concatenate([[0.0], np.cumsum(env[:-1])]) * (2.0 * math.pi * 0.9 * k / FPS)
    s, c = np.sin(phase), np.cos(phase)
    spread = 14 * _DEG * amp * 0.5 * (1.0 - c) * env
    clip = _Clip.zeros(n)
    a = clip.angles
    a[:, L_HIP, 2] = spread
    a[:, R_HIP, 2] = -spread
    a[:, L_KNEE, 0] = 35 * _DEG * np.clip(s, 0, None) ** 2 * env
    a[:, R_KNEE, 0] = 35 * _DEG * np.clip(-s, 0, None) ** 2 * env
    a[:, L_HIP, 0] = -18 * _DEG * np.clip(s, 0, None) ** 2 * env
    a[:, R_HIP, 0] = -18 * _DEG * np.clip(-s, 0, None) ** 2 * env
    a[:, L_SHOULDER, 2] = 10 * _DEG * env
    a[:, R_SHOULDER, 2] = -10 * _DEG * env
    _flat_feet(a)
    clip.stance = np.where(s > 0, -1.0, 1.0)  # the left foot travels while sin φ > 0
    return clip


def _jump(n, speed, style, rng, distance=0.0):
    """Crouch, push off, a ballistic flight of F frames (height g·(F/FPS)^2 / 8), land, absorb,
    recover. ``distance`` (m) is covered during the flight (jump forward)."""
    flight = int(np.clip(round(0.22 * n), 6, 9))
    takeoff = int(round(0.42 * n))
    landing = takeoff + flight
    t = np.arange(n + 1, dtype=np.float64)
    crouch_bottom = takeoff - 4
    depth = _ramp(t, 0.0, crouch_bottom) * (1.0 - _ramp(t, crouch_bottom, takeoff))
    depth += 0.6 * _ramp(t, landing, landing + 0.12 * n) * (1.0 - _ramp(t, landing + 0.12 * n, n))
    clip = _Clip.zeros(n)
    a = clip.angles
    flex = 50 * _DEG * style.amplitude * depth
    for side in ("left", "right"):
        hip, knee, _ = LEG_JOINTS[side]
        a[:, hip, 0] = -flex
        a[:, knee, 0] = 2.0 * flex
    _flat_feet(a)
    for j in SPINE_JOINTS:
        a[:, j, 0] = 25 * _DEG * depth / 3.0
    # Arms swing back while crouching, forward-up through the take-off and flight.
    arm_up = _ramp(t, takeoff - 3, takeoff + 2) * (1.0 - _ramp(t, landing, landing + 0.15 * n))
    arm_back = _ramp(t, 0.0, crouch_bottom) * (1.0 - _ramp(t, crouch_bottom, takeoff))
    for shoulder in (L_SHOULDER, R_SHOULDER):
        a[:, shoulder, 0] = 40 * _DEG * arm_back - 110 * _DEG * arm_up
    u = np.clip((t - takeoff) / flight, 0.0, 1.0)
    height = 9.81 * (flight / FPS) ** 2 / 8.0
    clip.lift = 4.0 * height * u * (1.0 - u)
    if distance:
        in_flight = (t >= takeoff) & (t < landing)
        clip.push[in_flight, 1] = distance / flight
    return clip


def _jump_forward(n, speed, style, rng):
    return _jump(n, speed, style, rng, distance=float(rng.uniform(0.6, 0.9)))


def _squat(n, speed, style, rng):
    """Down (40 %), hold (20 %), up (40 %): hips flex a, knees 2a (the foot stays under the hip
    when thigh ≈ shin), trunk leans forward, arms reach forward for balance."""
    s = np.linspace(0.0, 1.0, n + 1)
    depth = _pulse(s, 0.4, 0.6)
    clip = _Clip.zeros(n)
    a = clip.angles
    flex = 62 * _DEG * style.amplitude * depth
    for side in ("left", "right"):
        hip, knee, _ = LEG_JOINTS[side]
        a[:, hip, 0] = -flex
        a[:, knee, 0] = 2.0 * flex
    _flat_feet(a)
    for j in SPINE_JOINTS:
        a[:, j, 0] = 35 * _DEG * depth / 3.0
    for shoulder in (L_SHOULDER, R_SHOULDER):
        a[:, shoulder, 0] = -80 * _DEG * depth
    return clip


# Held poses (absolute Euler angles) of the state variables.
def _pose(entries: dict[tuple[int, int], float]) -> np.ndarray:
    pose = np.zeros((NUM_JOINTS, 3))
    for (joint, axis), value in entries.items():
        pose[joint, axis] = value
    return pose


#: Left arm raised overhead: abducted a little, flexed forward-up 150°, elbow nearly straight.
RAISED_LEFT_ARM_POSE = _pose({(L_SHOULDER, 0): -150 * _DEG, (L_SHOULDER, 2): 14 * _DEG,
                              (L_ELBOW, 0): -12 * _DEG, (L_COLLAR, 2): 12 * _DEG})
RAISED_RIGHT_ARM_POSE = RAISED_LEFT_ARM_POSE[MIRROR_JOINTS] * np.array([1.0, -1.0, -1.0])
#: Seated on an invisible chair: thighs horizontal (hips 90°), shins vertical, hands on thighs.
SEATED_POSE = _pose({(L_HIP, 0): -90 * _DEG, (R_HIP, 0): -90 * _DEG, (L_KNEE, 0): 90 * _DEG,
                     (R_KNEE, 0): 90 * _DEG, (SPINE1, 0): 4 * _DEG, (SPINE2, 0): 4 * _DEG,
                     (L_SHOULDER, 0): -35 * _DEG, (R_SHOULDER, 0): -35 * _DEG,
                     (L_ELBOW, 0): -45 * _DEG, (R_ELBOW, 0): -45 * _DEG})


def _state_change(n, key: str, start: float, end: float, lean: float = 0.0):
    s = np.linspace(0.0, 1.0, n + 1)
    clip = _Clip.zeros(n)
    clip.state[key] = start + (end - start) * _ramp(s, 0.08, 0.92)
    if lean:  # lean forward while moving the body weight (sitting down / standing up)
        bump = np.sin(math.pi * np.clip(s, 0, 1)) ** 2
        for j in SPINE_JOINTS:
            clip.angles[:, j, 0] = lean / 3.0 * bump
    return clip


def _raise_left_hand(n, speed, style, rng):
    return _state_change(n, "arm_left", 0.0, 1.0)


def _lower_left_hand(n, speed, style, rng):
    return _state_change(n, "arm_left", 1.0, 0.0)


def _raise_both_arms(n, speed, style, rng):
    clip = _state_change(n, "arm_left", 0.0, 1.0)
    clip.state["arm_right"] = clip.state["arm_left"].copy()
    return clip


def _lower_both_arms(n, speed, style, rng):
    clip = _state_change(n, "arm_left", 1.0, 0.0)
    clip.state["arm_right"] = clip.state["arm_left"].copy()
    return clip


def _sit_down(n, speed, style, rng):
    return _state_change(n, "seated", 0.0, 1.0, lean=25 * _DEG)


def _stand_up(n, speed, style, rng):
    return _state_change(n, "seated", 1.0, 0.0, lean=35 * _DEG)


_WAVE_HZ = {"quick": 3.2, "normal": 2.2, "slow": 1.2}


def _wave_left_hand(n, speed, style, rng):
    """Upper arm out to the side (abducted 80°, a little forward), forearm up (elbow 86° about
    the forward axis), the forearm swinging side to side ±26° at 1.2-3.2 Hz."""
    s = np.linspace(0.0, 1.0, n + 1)
    t = np.arange(n + 1, dtype=np.float64) / FPS
    up = _pulse(s, 0.22, 0.78)
    waving = _pulse(s, 0.3, 0.7, start=0.18, end=0.82)
    clip = _Clip.zeros(n)
    a = clip.angles
    a[:, L_SHOULDER, 2] = 80 * _DEG * up
    a[:, L_SHOULDER, 0] = -20 * _DEG * up
    a[:, L_COLLAR, 2] = 10 * _DEG * up
    a[:, L_ELBOW, 2] = 86 * _DEG * up + 26 * _DEG * waving * np.sin(
        2 * math.pi * _WAVE_HZ[speed] * style.cadence * t)
    return clip


def _kick_left_leg(n, speed, style, rng):
    """Chamber (hip 40°, knee 80°), snap out (hip 80°, knee 5°, toes pointed), retract, return;
    the right leg stands still (so the stance-foot rule keeps the pelvis in place)."""
    s = np.linspace(0.0, 1.0, n + 1)
    keys = (0.0, 0.3, 0.45, 0.62, 1.0)
    clip = _Clip.zeros(n)
    a = clip.angles
    amp = style.amplitude
    a[:, L_HIP, 0] = -amp * _DEG * _keyframes(s, keys, (0, 40, 80, 40, 0))
    a[:, L_KNEE, 0] = _DEG * _keyframes(s, keys, (0, 80, 5, 70, 0))
    a[:, L_ANKLE, 0] = _DEG * _keyframes(s, keys, (0, 10, 35, 10, 0))
    a[:, R_KNEE, 0] = _DEG * _keyframes(s, keys, (0, 8, 12, 8, 0))
    _flat_feet(a, ("right",))
    for j in SPINE_JOINTS:
        a[:, j, 0] = -_DEG * _keyframes(s, keys, (0, 3, 10, 3, 0)) / 3.0
    a[:, L_SHOULDER, 0] = _DEG * _keyframes(s, keys, (0, 15, 25, 15, 0))
    a[:, R_SHOULDER, 0] = -_DEG * _keyframes(s, keys, (0, 15, 25, 15, 0))
    a[:, L_SHOULDER, 2] = _DEG * _keyframes(s, keys, (0, 15, 20, 15, 0))
    a[:, R_SHOULDER, 2] = -a[:, L_SHOULDER, 2]
    clip.stance[:] = -1.0
    return clip


# --------------------------------------------------------------------------------------------
# Action inventory
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ActionSpec:
    """One action of the inventory.

    name: e.g. "turn_left"; renderer: the canonical renderer ``(frames, speed, style, rng) ->
    _Clip``; mirrored: render the canonical (left) version and mirror it (the right version);
    side: "left"/"right" (the side word the captions use),
    "clockwise"/"counterclockwise" for circles, None otherwise; kind: "move" (locomotion that a
    wave can accompany), "whole" (whole-body, standing), "arm" (allowed while seated), "posture";
    speedable: captions may say quickly/slowly and the speed changes the motion; cyclic: a gait
    whose speed comes from its step rate, so any duration shows the same speed (others complete
    once over their duration: a quick turn is a short one); frames: (lo, hi) frames for quick,
    normal, slow (only "normal" is used when not speedable); phrases: caption templates (see
    :func:`_phrase_words`).
    """

    name: str
    renderer: Callable
    phrases: tuple[str, ...]
    kind: str = "whole"
    side: str | None = None
    mirrored: bool = False
    speedable: bool = True
    cyclic: bool = False
    frames: tuple[tuple[int, int], ...] = ((20, 30), (30, 44), (44, 60))  # quick, normal, slow

    def frame_range(self, speed: str) -> tuple[int, int]:
        return self.frames[("quick", "normal", "slow").index(speed)] if self.speedable \
            else self.frames[1]


_T_WALK_FWD = ("~walk forward", "~walk forwards", "~walk straight forward", "~walk ahead",
               "~take a few steps|NOUN forward", "~move forward", "~step forward",
               "~walk forward a few steps|NOUN")
_T_WALK_BACK = ("~walk backward", "~walk backwards", "~step backward", "~walk back",
                "~take a few steps|NOUN backward", "~move backwards", "~back up|ADP",
                "~step backwards")
_T_JOG = ("~jog forward", "~jog", "~jog straight ahead", "~do a light jog|NOUN",
          "~jog a short distance|NOUN")
_T_RUN = ("~run forward", "~run", "~run straight ahead", "~break into a run|NOUN",
          "~run a short distance|NOUN")
_T_TURN = ("~turn {side:ADV}", "~turn to the {side:NOUN}", "~turn to {poss} {side:NOUN}",
           "~make a {side:ADJ} turn|NOUN", "~rotate to the {side:NOUN}",
           "~pivot to the {side:NOUN}", "~turn ninety degrees to the {side:NOUN}")
_T_TURN_AROUND = ("~turn around", "~turn all the way around", "~turn back around",
                  "~do a half turn|NOUN", "~turn around to face the other way")
_T_CIRCLE = ("~walk in a {dir:ADJ} circle", "~walk {dir:ADV} in a circle",
             "~walk in a circle {dir:ADV}", "~walk around in a {dir:ADJ} direction",
             "~circle {dir:ADV}", "~walk a full circle {dir:ADV}",
             "~walk in a full circle going {dir:ADV}")
_T_SIDESTEP = ("~sidestep to the {side:NOUN}", "~step sideways to the {side:NOUN}",
               "~shuffle to the {side:NOUN}", "~side-step to {poss} {side:NOUN}",
               "~take a few steps|NOUN to the {side:NOUN}", "~move sideways to the {side:NOUN}",
               "~step to the {side:NOUN} sideways")
_T_UPSTAIRS = ("~walk up the stairs", "~climb up the stairs", "~go up a flight of stairs",
               "~walk upstairs", "~climb the stairs", "~walk up some steps|NOUN",
               "~ascend the stairs")
_T_DOWNSTAIRS = ("~walk down the stairs", "~go down the stairs", "~walk downstairs",
                 "~descend the stairs", "~go down a flight of stairs",
                 "~walk down some steps|NOUN", "~climb down the stairs")
_T_RAISE = ("~raise {poss} {side:ADJ} hand", "~raise the {side:ADJ} hand",
            "~lift {poss} {side:ADJ} arm up", "~put {poss} {side:ADJ} hand up",
            "~raise {poss} {side:ADJ} arm above {poss} head", "~raise the {side:ADJ} arm up",
            "~lift the {side:ADJ} hand")
_T_RAISE_BOTH = ("~raise both arms", "~raise both hands", "~lift both arms up",
                 "~put both hands up", "~raise {poss} arms above {poss} head",
                 "~raise {poss} hands up", "~lift {poss} arms into the air")
_T_LOWER = ("~lower {poss} {side:ADJ} hand", "~lower the {side:ADJ} arm",
            "~put {poss} {side:ADJ} hand down", "~bring {poss} {side:ADJ} arm down",
            "~lower {poss} {side:ADJ} arm back down", "~drop the {side:ADJ} hand",
            "~bring the {side:ADJ} hand back down")
_T_LOWER_BOTH = ("~lower both arms", "~lower {poss} hands", "~put both arms down",
                 "~bring {poss} arms back down", "~drop both hands to {poss} sides",
                 "~lower both hands")
_T_WAVE = ("~wave {poss} {side:ADJ} hand", "~wave with {poss} {side:ADJ} hand",
           "~wave the {side:ADJ} hand", "~wave {poss} {side:ADJ} arm",
           "~wave hello with {poss} {side:ADJ} hand", "~wave with the {side:ADJ} arm")
_T_KICK = ("~kick with {poss} {side:ADJ} leg", "~kick with the {side:ADJ} foot",
           "~kick {poss} {side:ADJ} leg forward", "~do a kick|NOUN with {poss} {side:ADJ} leg",
           "~kick forward with {poss} {side:ADJ} foot", "~kick out with the {side:ADJ} leg")
_T_JUMP = ("~jump", "~jump up", "~jump in place", "~do a jump|NOUN", "~jump straight up",
           "~jump once")
_T_JUMP_FWD = ("~jump forward", "~leap forward", "~jump ahead", "~do a forward|ADJ jump|NOUN",
               "~jump forward with both feet", "~hop forward")
_T_SQUAT = ("~squat", "~squat down and ~stand back up", "~do a squat|NOUN",
            "~crouch down and ~get up", "~bend {poss} knees into a squat|NOUN and ~rise",
            "~squat down and ~come back up")
_T_SIT = ("~sit down", "~take a seat|NOUN", "~sit down on a chair", "~sit down on something",
          "~sit")
_T_STAND = ("~stand up", "~get up", "~rise to {poss} feet", "~stand back up",
            "~rise from {poss} seat|NOUN", "~get back up")

_CIRCLE_FRAMES = ((30, 40), (40, 52), (52, 60))


def _inventory() -> dict[str, ActionSpec]:
    specs = [
        ActionSpec("walk_forward", _walk, _T_WALK_FWD, kind="move", cyclic=True),
        ActionSpec("walk_backward", _walk_backward, _T_WALK_BACK, kind="move", cyclic=True),
        ActionSpec("jog", _jog, _T_JOG, speedable=False, cyclic=True,
                   frames=((0, 0), (24, 50), (0, 0))),
        ActionSpec("run", _run, _T_RUN, speedable=False, cyclic=True,
                   frames=((0, 0), (20, 44), (0, 0))),
        ActionSpec("walk_upstairs", _stairs, _T_UPSTAIRS, cyclic=True),
        ActionSpec("walk_downstairs", _walk_downstairs, _T_DOWNSTAIRS, cyclic=True),
        ActionSpec("turn_around", _turn_around, _T_TURN_AROUND, kind="move"),
        ActionSpec("jump", _jump, _T_JUMP, speedable=False, frames=((0, 0), (24, 40), (0, 0))),
        ActionSpec("jump_forward", _jump_forward, _T_JUMP_FWD, speedable=False,
                   frames=((0, 0), (24, 40), (0, 0))),
        ActionSpec("squat", _squat, _T_SQUAT),
        ActionSpec("sit_down", _sit_down, _T_SIT, kind="posture"),
        ActionSpec("stand_up", _stand_up, _T_STAND, kind="posture"),
        ActionSpec("raise_both_arms", _raise_both_arms, _T_RAISE_BOTH, kind="arm"),
        ActionSpec("lower_both_arms", _lower_both_arms, _T_LOWER_BOTH, kind="arm"),
    ]
    for side in ("left", "right"):
        mirrored = side == "right"
        specs += [
            ActionSpec(f"turn_{side}", _turn_left, _T_TURN, kind="move", side=side,
                       mirrored=mirrored),
            ActionSpec(f"sidestep_{side}", _sidestep_left, _T_SIDESTEP, kind="move", side=side,
                       mirrored=mirrored, cyclic=True),
            ActionSpec(f"raise_{side}_hand", _raise_left_hand, _T_RAISE, kind="arm", side=side,
                       mirrored=mirrored),
            ActionSpec(f"lower_{side}_hand", _lower_left_hand, _T_LOWER, kind="arm", side=side,
                       mirrored=mirrored),
            ActionSpec(f"wave_{side}_hand", _wave_left_hand, _T_WAVE, kind="arm", side=side,
                       mirrored=mirrored),
            ActionSpec(f"kick_{side}_leg", _kick_left_leg, _T_KICK, side=side, mirrored=mirrored,
                       speedable=False, frames=((0, 0), (22, 34), (0, 0))),
        ]
    for direction, mirrored in (("counterclockwise", False), ("clockwise", True)):
        specs.append(ActionSpec(f"circle_{direction}", _circle_counterclockwise, _T_CIRCLE,
                                kind="move", side=direction, mirrored=mirrored,
                                frames=_CIRCLE_FRAMES))
    return {spec.name: spec for spec in specs}


#: Action name -> :class:`ActionSpec`. Left/right pairs (turn, sidestep, raise/lower/wave hand,
#: kick) and clockwise/counterclockwise circles are exact mirror images of each other.
ACTIONS: dict[str, ActionSpec] = _inventory()


# --------------------------------------------------------------------------------------------
# Planning: which actions, in which order, how long
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """One time segment: ``action`` (a key of :data:`ACTIONS`), optional simultaneous
    ``overlay`` (a wave during a "move" action), ``speed`` and length in feature frames;
    ``active`` frames of motion followed by a still hold (only a single short action is held, to
    reach the 40-frame minimum)."""

    action: str
    speed: str
    frames: int
    active: int
    overlay: str | None = None

    @property
    def actions(self) -> list[str]:
        return [self.action] + ([self.overlay] if self.overlay else [])


@dataclass(frozen=True)
class MotionPlan:
    segments: tuple[Segment, ...]

    @property
    def num_frames(self) -> int:
        return sum(s.frames for s in self.segments)

    @property
    def bounds(self) -> list[int]:
        return [0] + np.cumsum([s.frames for s in self.segments]).tolist()


_SEGMENT_COUNT_PROBS = (0.15, 0.35, 0.30, 0.20)  # 1, 2, 3, 4 segments
_SPEED_PROBS = (("normal", 0.6), ("quick", 0.2), ("slow", 0.2))
_OVERLAY_PROBABILITY = 0.15


def _allowed(spec: ActionSpec, state: dict) -> bool:
    name = spec.name
    if name == "stand_up":
        return state["seated"]
    if state["seated"] and spec.kind != "arm":
        return False  # seated: only arm actions, or standing up
    if name.startswith("raise_"):
        return not state["arm"]["left"] and not state["arm"]["right"] if spec.side is None \
            else not state["arm"][spec.side]
    if name.startswith("lower_"):
        return state["arm"]["left"] and state["arm"]["right"] if spec.side is None \
            else state["arm"][spec.side]
    if name.startswith("wave_"):
        return not state["arm"][spec.side]
    return True


def _apply(spec: ActionSpec, state: dict) -> None:
    name = spec.name
    sides = ("left", "right") if spec.side is None else (spec.side,)
    if name.startswith("raise_"):
        for side in sides:
            state["arm"][side] = True
    elif name.startswith("lower_"):
        for side in sides:
            state["arm"][side] = False
    elif name == "sit_down":
        state["seated"] = True
    elif name == "stand_up":
        state["seated"] = False


def _weight(spec: ActionSpec, state: dict) -> float:
    if spec.name.startswith("lower_") or spec.name == "stand_up":
        return 8.0  # held states usually get undone
    return 1.0


def plan_motion(rng: np.random.Generator) -> MotionPlan:
    """Sample 1-4 segments obeying the held state (arms up, seated) and the length limits:
    each action 20-60 frames (quick 20-30, normal 30-44, slow 44-60; some actions have their
    own range), total ``MIN_FRAMES <= T <= MAX_FRAMES``."""
    num_segments = int(rng.choice(4, p=_SEGMENT_COUNT_PROBS)) + 1
    state = {"seated": False, "arm": {"left": False, "right": False}}
    names = list(ACTIONS)
    segments: list[Segment] = []
    previous = None
    for _ in range(num_segments):
        candidates = [n for n in names if n != previous and _allowed(ACTIONS[n], state)]
        weights = np.array([_weight(ACTIONS[n], state) for n in candidates])
        name = candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]
        spec = ACTIONS[name]
        speed = "normal"
        if spec.speedable:
            speed = _SPEED_PROBS[int(rng.choice(3, p=[p for _, p in _SPEED_PROBS]))][0]
        overlay = None
        if spec.kind == "move" and rng.random() < _OVERLAY_PROBABILITY:
            free = [s for s in ("left", "right") if not state["arm"][s]]
            if free:
                overlay = f"wave_{free[int(rng.integers(len(free)))]}_hand"
        lo, hi = spec.frame_range(speed)
        frames = int(rng.integers(lo, hi + 1))
        segments.append(Segment(name, speed, frames, frames, overlay))
        _apply(spec, state)
        previous = name
    total = sum(s.frames for s in segments)
    if len(segments) == 1 and total < MIN_FRAMES:
        # One short action: move for its own duration, then stand still up to 2 s.
        only = segments[0]
        active = MIN_FRAMES if ACTIONS[only.action].cyclic else only.frames
        segments = [Segment(only.action, only.speed, MIN_FRAMES, active, only.overlay)]
    elif total > MAX_FRAMES:
        # Shrink proportionally (keeps quick < normal < slow ordering within a motion).
        scale = MAX_FRAMES / total
        sized = [max(MIN_ACTION_FRAMES, int(s.frames * scale)) for s in segments]
        while sum(sized) > MAX_FRAMES:
            sized[int(np.argmax(sized))] -= 1
        segments = [Segment(s.action, s.speed, f, f, s.overlay) for s, f in zip(segments, sized)]
    return MotionPlan(tuple(segments))


# --------------------------------------------------------------------------------------------
# Rendering: plan -> joint positions
# --------------------------------------------------------------------------------------------

def _render_clip(segment: Segment, style: _Style, rng: np.random.Generator) -> _Clip:
    spec = ACTIONS[segment.action]
    clip = spec.renderer(segment.active, segment.speed, style, rng)
    if spec.mirrored:
        clip = clip.mirrored()
    if segment.overlay:
        wave_spec = ACTIONS[segment.overlay]
        wave = wave_spec.renderer(segment.active, "normal", style, rng)
        if wave_spec.mirrored:
            wave = wave.mirrored()
        for j in ARM_JOINTS[wave_spec.side]:
            clip.angles[:, j] = wave.angles[:, j]
    return clip.held(segment.frames)


def render_motion(plan: MotionPlan, rng: np.random.Generator,
                  style: _Style | None = None) -> np.ndarray:
    """World joint positions ``[T + 1, 22, 3]`` float64 of a plan (T = ``plan.num_frames``
    feature frames; HumanML3D features have one frame fewer than the joints they come from).

    Steps: (1) concatenate the segments' clips on top of the held pose (arms raised, seated);
    arm deltas are suppressed while that arm is held up. (2) Forward kinematics in the body frame
    (no yaw, root at the origin). (3) Root height = floor level + flight − lowest foot joint, so
    the lowest foot touches the floor. (4) Stance foot = the one the clip names (gaits), else
    the side whose lower foot joint is lower; the root moves by minus that foot's body-frame
    displacement (plus the clip's explicit push), rotated by the heading. So a planted foot does
    not slide (while the heading is constant). (5) Forward kinematics in the world.
    """
    style = style or _Style()
    num_frames = plan.num_frames
    n_joint = num_frames + 1
    angles = np.zeros((n_joint, NUM_JOINTS, 3))
    yaw = np.zeros(n_joint)
    ground = np.zeros(n_joint)
    lift = np.zeros(n_joint)
    push = np.zeros((n_joint, 2))
    stance = np.zeros(n_joint)
    state_tracks = {k: np.zeros(n_joint) for k in ("arm_left", "arm_right", "seated")}
    held = {k: 0.0 for k in state_tracks}
    yaw0 = ground0 = 0.0
    for start, segment in zip(plan.bounds[:-1], plan.segments):
        clip = _render_clip(segment, style, rng)
        stop = start + segment.frames + 1  # clips include their end instant
        angles[start:stop] = clip.angles
        yaw[start:stop] = yaw0 + clip.yaw
        ground[start:stop] = ground0 + clip.ground
        lift[start:stop] = clip.lift
        push[start:stop] = clip.push
        stance[start:stop] = clip.stance
        for key in state_tracks:
            track = clip.state.get(key)
            state_tracks[key][start:stop] = held[key] if track is None else track
            held[key] = float(state_tracks[key][stop - 1])
        yaw0, ground0 = float(yaw[stop - 1]), float(ground[stop - 1])
    for side in ("left", "right"):
        elevation = state_tracks[f"arm_{side}"][:, None]
        for j in ARM_JOINTS[side]:
            angles[:, j] *= 1.0 - elevation
    angles += state_tracks["arm_left"][:, None, None] * RAISED_LEFT_ARM_POSE
    angles += state_tracks["arm_right"][:, None, None] * RAISED_RIGHT_ARM_POSE
    angles += state_tracks["seated"][:, None, None] * SEATED_POSE

    local = pose_to_local_rotations(angles, np.zeros(n_joint))
    body = _skel.forward_kinematics(local, np.zeros((n_joint, 3)), OFFSETS, PARENTS)
    feet = {side: body[:, list(FOOT_JOINTS[side])] for side in ("left", "right")}
    lowest = {side: feet[side][..., 1].min(axis=1) for side in feet}
    root_height = ground + lift - np.minimum(lowest["left"], lowest["right"])
    stance_left = np.where(stance != 0, stance > 0, lowest["left"] <= lowest["right"])
    anchor = {side: feet[side][..., [0, 2]].mean(axis=1) for side in feet}  # xz of ankle+toe
    step = {side: np.diff(anchor[side], axis=0) for side in anchor}        # [T, 2]
    body_step = -np.where(stance_left[:-1, None], step["left"], step["right"]) + push[:-1]
    # Rotate the body-frame (x, z) step by the heading at its start: Ry(yaw) (x, z) =
    # (x cos + z sin, -x sin + z cos).
    c, s = np.cos(yaw[:-1]), np.sin(yaw[:-1])
    world_step = np.stack([body_step[:, 0] * c + body_step[:, 1] * s,
                           -body_step[:, 0] * s + body_step[:, 1] * c], axis=1)
    root_xz = np.concatenate([np.zeros((1, 2)), np.cumsum(world_step, axis=0)], 0)
    root = np.stack([root_xz[:, 0], root_height, root_xz[:, 1]], axis=1)
    # Heading: only the root rotation changes; every other L_j = G_c^T G_j is unchanged when all
    # global rotations are premultiplied by the same Ry(yaw).
    local[:, 0] = _rot_y(yaw) @ local[:, 0]
    return _skel.forward_kinematics(local, root, OFFSETS, PARENTS)


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Word:
    """One caption word: ``surface`` as written, and its HumanML3D token ``lemma/POS``."""

    surface: str
    lemma: str
    pos: str

    @property
    def token(self) -> str:
        return f"{self.lemma}/{self.pos}"


# Default (lemma, UPOS) of every word the templates use. Words with several readings ("left",
# "up", "right", "clockwise") get their POS in the template (``left|ADV``, ``{side:NOUN}``).
_LEXICON: dict[str, tuple[str, str]] = {}


def _lex(pos: str, words: str, lemmas: dict[str, str] | None = None) -> None:
    for word in words.split():
        _LEXICON[word] = ((lemmas or {}).get(word, word), pos)


_lex("DET", "a the some both all his her their another")
_lex("PRON", "someone something he she that")
_lex("NOUN", "person man woman figure direction circle flight arm hand leg foot head knee jump "
             "kick squat seat chair place way turn side air distance jog run stair step degree "
             "pace time",)
_lex("NOUN", "stairs steps arms hands knees feet degrees sides",
     {"stairs": "stair", "steps": "step", "arms": "arm", "hands": "hand", "knees": "knee",
      "feet": "foot", "degrees": "degree", "sides": "side"})
_lex("ADV", "forward forwards ahead straight backward backwards back sideways upstairs downstairs "
            "around once then next finally first quickly fast rapidly slowly very also "
            "clockwise counterclockwise anticlockwise")
_lex("ADJ", "few light short full half other slow quick same")
_lex("ADP", "up down after before to in on of with into above from at out")
_lex("SCONJ", "while")
_lex("CCONJ", "and but")
_lex("INTJ", "hello")
_lex("NUM", "ninety")
_lex("VERB", "face going")
_LEXICON["going"] = ("go", "VERB")
_lex("AUX", "is")

# Inflections (third person singular, gerund) of the verbs the templates use.
_IRREGULAR = {
    "go": ("goes", "going"), "do": ("does", "doing"), "run": ("runs", "running"),
    "jog": ("jogs", "jogging"), "sit": ("sits", "sitting"), "squat": ("squats", "squatting"),
    "step": ("steps", "stepping"), "put": ("puts", "putting"), "get": ("gets", "getting"),
    "drop": ("drops", "dropping"), "hop": ("hops", "hopping"), "side-step": ("side-steps",
                                                                              "side-stepping"),
    "sidestep": ("sidesteps", "sidestepping"), "crouch": ("crouches", "crouching"),
    "bend": ("bends", "bending"), "pivot": ("pivots", "pivoting"),
}


def _inflect(lemma: str, form: str) -> str:
    """``form`` "3sg" (walks) or "ing" (walking) of a verb lemma."""
    if lemma in _IRREGULAR:
        return _IRREGULAR[lemma][0 if form == "3sg" else 1]
    if form == "3sg":
        return lemma + ("es" if lemma.endswith(("s", "sh", "ch", "x")) else "s")
    if lemma.endswith("e") and not lemma.endswith("ee"):
        return lemma[:-1] + "ing"
    return lemma + "ing"


_CIRCLE_WORDS = {"clockwise": ("clockwise",),
                 "counterclockwise": ("counterclockwise", "anticlockwise", "counter-clockwise")}


def _make_word(surface: str, pos: str | None = None) -> _Word:
    """A word with its HumanML3D token. HumanML3D's ``process_text`` removes hyphens, keeps only
    alphabetic tokens, lemmatizes NOUN and VERB (except "left") and keeps every other word as
    written."""
    plain = surface.replace("-", "")
    lemma, default_pos = _LEXICON.get(surface, _LEXICON.get(plain, (plain, None)))
    pos = pos or default_pos
    if pos is None:
        raise KeyError(f"word {surface!r} has no POS: add it to the lexicon or tag it in the "
                       f"template")
    if pos not in ("NOUN", "VERB") or plain == "left":
        lemma = plain
    return _Word(surface, lemma.replace("-", ""), pos)


def _phrase_words(template: str, form: str, poss: str, side: str | None,
                  circle_word: str | None) -> list[_Word]:
    """Render a template into words.

    Markup: ``~verb`` = a verb lemma inflected to ``form`` ("3sg" or "ing"); ``word|POS`` = POS
    override; ``{poss}`` = the subject's possessive (his/her/their); ``{side:POS}`` = "left" or
    "right"; ``{dir:POS}`` = the circle direction word (clockwise, counterclockwise, ...).
    """
    words = []
    for item in template.split():
        pos = None
        if item.startswith("{poss}"):
            words.append(_make_word(poss, "DET"))
            continue
        if item.startswith("{side:") or item.startswith("{dir:"):
            pos = item[item.index(":") + 1:-1]
            words.append(_make_word(side if item.startswith("{side:") else circle_word, pos))
            continue
        if "|" in item:
            item, pos = item.split("|")
        if item.startswith("~"):
            lemma = item[1:]
            words.append(_Word(_inflect(lemma, form), lemma.replace("-", ""), "VERB"))
        else:
            words.append(_make_word(item, pos))
    return words


_SPEED_SUFFIX = {"quick": ("quickly", "fast", "rapidly", "quickly", "very quickly"),
                 "slow": ("slowly", "slowly", "at a slow pace", "very slowly")}
_SPEED_PREFIX = {"quick": ("quickly", "rapidly"), "slow": ("slowly",)}
_SUBJECTS = (("a person", "his"), ("a person", "their"), ("the person", "his"),
             ("the person", "their"), ("someone", "their"), ("someone", "his"), ("a man", "his"),
             ("the man", "his"), ("a woman", "her"), ("the woman", "her"), ("a figure", "its"),
             ("the figure", "its"))
_SUBJECT_WEIGHTS = np.array([6, 3, 4, 2, 3, 2, 4, 2, 1.5, 1, 1, 0.5])
_LEXICON["its"] = ("its", "DET")
_PRONOUN = {"his": "he", "her": "she"}


class _CaptionBuilder:
    """Accumulates words and punctuation into a caption, remembering each segment's span."""

    def __init__(self) -> None:
        self.text = ""
        self.words: list[_Word] = []
        self.spans: dict[int, list[int]] = {}
        self.order: list[int] = []

    def add(self, words: Sequence[_Word], segment: int | None = None) -> None:
        if not words:
            return
        if self.text:
            self.text += " "
        start = len(self.text)
        self.text += " ".join(w.surface for w in words)
        self.words.extend(words)
        if segment is not None:
            if segment in self.spans:  # a segment's words are contiguous
                assert self.spans[segment][1] == start - 1 or self.spans[segment][1] == start
                self.spans[segment][1] = len(self.text)
            else:
                self.spans[segment] = [start, len(self.text)]
                self.order.append(segment)

    def punct(self, mark: str) -> None:
        self.text += mark


@dataclass(frozen=True)
class CaptionRecord:
    """One caption with its ground truth: ``text``; ``tokens`` ("lemma/POS"); ``subtexts``
    and ``spans`` (char [start, end) in ``text``) per segment in time order; ``text_order`` the
    segment indices in caption order."""

    text: str
    tokens: tuple[str, ...]
    subtexts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    text_order: tuple[int, ...]

    @property
    def line(self) -> str:
        """The HumanML3D text-file line ``caption#tokens#0.0#0.0``."""
        return f"{self.text}#{' '.join(self.tokens)}#0.0#0.0"


def _segment_side(action: str) -> tuple[str | None, str | None]:
    spec = ACTIONS[action]
    if spec.name.startswith("circle_"):
        return None, spec.side
    return spec.side, None


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


class _SegmentPhrases:
    """The surface choices for one segment within one caption (template, adverb placement)."""

    def __init__(self, segment: Segment, rng: np.random.Generator, poss: str):
        self.segment = segment
        self.poss = poss
        spec = ACTIONS[segment.action]
        self.template = _pick(rng, spec.phrases)
        side, circle = _segment_side(segment.action)
        self.side = side
        self.circle_word = _pick(rng, _CIRCLE_WORDS[circle]) if circle else None
        self.speed_words: list[_Word] = []
        self.speed_prefix = False
        if segment.speed != "normal":
            self.speed_prefix = rng.random() < 0.3
            table = _SPEED_PREFIX if self.speed_prefix else _SPEED_SUFFIX
            self.speed_words = [_make_word(w) for w in _pick(rng, table[segment.speed]).split()]
        self.overlay_pattern = int(rng.integers(3))
        if segment.overlay:
            wave_spec = ACTIONS[segment.overlay]
            self.wave_template = _pick(rng, wave_spec.phrases)
            self.wave_side = wave_spec.side

    def primary(self, form: str) -> list[_Word]:
        words = _phrase_words(self.template, form, self.poss, self.side, self.circle_word)
        if self.speed_prefix:
            return self.speed_words + words
        return words + self.speed_words

    def wave(self, form: str) -> list[_Word]:
        return _phrase_words(self.wave_template, form, self.poss, self.wave_side, None)

    def words(self, form: str) -> list[_Word]:
        """The whole segment: for a "while" segment one of "X while Y-ing", "Y while X-ing",
        "X and Y at the same time" (X the locomotion, Y the wave)."""
        if not self.segment.overlay:
            return self.primary(form)
        if self.overlay_pattern == 0:
            return self.primary(form) + [_make_word("while")] + self.wave("ing")
        if self.overlay_pattern == 1:
            return self.wave(form) + [_make_word("while")] + self.primary("ing")
        return (self.primary(form) + [_make_word("and")] + self.wave(form)
                + [_make_word(w) for w in "at the same time".split()])


def _words(text: str) -> list[_Word]:
    return [_make_word(w) for w in text.split()]


# Connectors between consecutive clauses in time order: (words before the next clause, whether a
# sentence break comes first, i.e. the next clause may restate the subject).
_CHAIN_CONNECTORS = ((",", "then"), ("", "then"), ("", "and then"), (",", "and then"),
                     (".", "then"), (",", "after that"), (".", "after that ,"), ("", "and"),
                     (",", "and after that"), (",", "next"), (".", "next ,"))
_FINAL_CONNECTORS = ((",", "and finally"), ("", "and finally"), (".", "finally ,"))


def _build_caption(plan: MotionPlan, rng: np.random.Generator) -> CaptionRecord:
    segments = plan.segments
    n = len(segments)
    subject_text, poss = _SUBJECTS[int(rng.choice(len(_SUBJECTS),
                                                  p=_SUBJECT_WEIGHTS / _SUBJECT_WEIGHTS.sum()))]
    subject = _words(subject_text)
    phrases = [_SegmentPhrases(s, rng, poss) for s in segments]
    builder = _CaptionBuilder()

    def restated_subject() -> list[_Word]:
        # After a sentence break, sometimes restate the subject ("then he turns left").
        if rng.random() < 0.5:
            return []
        pronoun = _PRONOUN.get(poss)
        if pronoun and rng.random() < 0.7:
            return [_make_word(pronoun)]
        return _words("the " + subject_text.split()[-1]) if subject_text != "someone" else []

    def chain(first: int, stop: int, lead_connector: tuple[str, str] | None) -> None:
        """Clauses first..stop-1 in time order with sequential connectors."""
        for k in range(first, stop):
            connector = lead_connector if k == first else None
            if k > 0 and connector is None:
                table = _FINAL_CONNECTORS if (k == n - 1 and n >= 3 and rng.random() < 0.4) \
                    else _CHAIN_CONNECTORS
                connector = _pick(rng, table)
            extra: list[_Word] = []
            if connector is not None:
                mark, text = connector
                if mark:
                    builder.punct(mark)
                tail_comma = text.endswith(" ,")
                builder.add(_words(text[:-2] if tail_comma else text))
                if tail_comma:
                    builder.punct(",")
                if mark == "." or text.startswith("next"):
                    extra = restated_subject()
            builder.add(extra + phrases[k].words("3sg"), k)

    # Structures. "chain": X, then Y, ... ; "first": "a person first X, then Y". Pair structures
    # join two consecutive simple (no "while") segments p, p+1 with "before"/"after":
    #   before:            "X before Y-ing"          time X, Y   text X, Y
    #   after:             "after X-ing, Y"          time X, Y   text X, Y
    #   after_reordered:   "Y after X-ing"           time X, Y   text Y, X
    #   before_reordered:  "before Y-ing, X"         time X, Y   text Y, X
    #   but_before_that:   "Y, but before that X"    time X, Y   text Y, X
    # A pair that opens the caption may be followed by more clauses only when its last clause
    # is the later one in time (before, after): "a person walks forward before turning left,
    # then jumps". Reordered pairs close the caption ("..., then turns left after walking
    # forward"), or are the whole caption, so "then"/"after that" always refer to the segment
    # just before in time.
    options: list[tuple[str, int]] = [("chain", 0)]
    weights = [0.6]
    if n >= 2:
        options.append(("first", 0))
        weights.append(0.1)
    simple = [not s.overlay for s in segments]
    if n >= 2 and simple[0] and simple[1]:
        options += [("before", 0), ("after", 0)]
        weights += [0.07, 0.04]
        if n == 2:
            options += [("after_reordered", 0), ("before_reordered", 0), ("but_before_that", 0)]
            weights += [0.07, 0.06, 0.04]
    if n >= 3 and simple[n - 2] and simple[n - 1]:
        options += [("before", n - 2), ("after_reordered", n - 2)]
        weights += [0.04, 0.06]
    if n == 1 and not segments[0].overlay:
        options.append(("progressive", 0))
        weights.append(0.25)
    weights_array = np.asarray(weights) / np.sum(weights)
    structure, pair = options[int(rng.choice(len(options), p=weights_array))]

    def pair_clauses(lead: list[_Word]) -> None:
        """Segments pair, pair+1 in the chosen pair structure; ``lead`` = words before the
        first main clause (the subject when the pair opens the caption)."""
        x, y = pair, pair + 1
        if structure == "before":
            builder.add(lead + phrases[x].words("3sg"), x)
            builder.add([_make_word("before")])
            builder.add(phrases[y].words("ing"), y)
        elif structure == "after":
            builder.add([_make_word("after")])
            builder.add(phrases[x].words("ing"), x)
            builder.punct(",")
            builder.add(lead + phrases[y].words("3sg"), y)
        elif structure == "after_reordered":
            builder.add(lead + phrases[y].words("3sg"), y)
            builder.add([_make_word("after")])
            builder.add(phrases[x].words("ing"), x)
        elif structure == "before_reordered":
            builder.add([_make_word("before")])
            builder.add(phrases[y].words("ing"), y)
            builder.punct(",")
            builder.add(lead + phrases[x].words("3sg"), x)
        else:  # but_before_that
            builder.add(lead + phrases[y].words("3sg"), y)
            builder.punct(",")
            builder.add(_words("but before that"))
            builder.add(phrases[x].words("3sg"), x)

    if structure == "progressive":  # "a person is walking forward"
        builder.add(subject + [_make_word("is")] + phrases[0].words("ing"), 0)
    elif structure == "chain":
        builder.add(subject)
        chain(0, n, None)
        builder.spans[0][0] = 0  # the subject belongs to the first clause's sub-text
    elif structure == "first":
        builder.add(subject)
        builder.add([_make_word("first")] + phrases[0].words("3sg"), 0)
        builder.spans[0][0] = 0
        chain(1, n, (",", "then") if rng.random() < 0.6 else None)
    elif pair == 0:
        pair_clauses(subject)
        chain(2, n, None)
    else:
        builder.add(subject)
        chain(0, pair, None)
        builder.spans[0][0] = 0
        mark, text = _pick(rng, _CHAIN_CONNECTORS[:5])
        if mark:
            builder.punct(mark)
        builder.add(_words(text))
        pair_clauses(restated_subject() if mark == "." else [])
    if rng.random() < 0.7:
        builder.punct(".")
    text = builder.text
    spans = tuple(tuple(builder.spans[k]) for k in range(n))
    return CaptionRecord(text=text, tokens=tuple(w.token for w in builder.words),
                         subtexts=tuple(text[a:b] for a, b in spans), spans=spans,
                         text_order=tuple(builder.order))


def generate_captions(plan: MotionPlan, rng: np.random.Generator,
                      count: int = 3) -> list[CaptionRecord]:
    """``count`` distinct captions of ``plan`` (different surface forms of the same segments;
    a few retries, then duplicates are allowed for one-word-choice plans)."""
    captions: list[CaptionRecord] = []
    seen: set[str] = set()
    for _ in range(count * 8):
        caption = _build_caption(plan, rng)
        if caption.text not in seen:
            seen.add(caption.text)
            captions.append(caption)
            if len(captions) == count:
                break
    while len(captions) < count:
        captions.append(_build_caption(plan, rng))
    return captions


# --------------------------------------------------------------------------------------------
# One motion: plan, joints, features, captions
# --------------------------------------------------------------------------------------------

def motion_id(index: int) -> str:
    """File id of motion ``index``: six digits like HumanML3D ("000042"), wider past 999999."""
    return f"{index:06d}"


@dataclass(frozen=True)
class SyntheticMotion:
    """One generated motion.

    id: file id; plan: its segments; features: ``[T, 263]`` float32 (HumanML3D layout);
    joints: ``[T, 22, 3]`` float32 = ``recover_joints(features)``; captions: its captions
    (3, sometimes 4) with their ground truth.
    """

    id: str
    plan: MotionPlan
    features: np.ndarray
    joints: np.ndarray
    captions: tuple[CaptionRecord, ...]

    def text_lines(self) -> list[str]:
        return [c.line for c in self.captions]

    def segment_entries(self) -> list[dict]:
        """The segments.json entries of this motion (one per caption, same order as the text
        file)."""
        bounds = self.plan.bounds
        actions = [s.actions for s in self.plan.segments]
        speeds = [s.speed for s in self.plan.segments]
        return [{"caption": c.text, "subtexts": list(c.subtexts), "bounds_frames": bounds,
                 "actions": actions, "speeds": speeds, "text_order": list(c.text_order),
                 "spans": [list(span) for span in c.spans]} for c in self.captions]


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def motion_from_plan(plan: MotionPlan, rng: np.random.Generator | None = None,
                     style: "_Style | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and joints of a plan, exactly as the dataset files hold them.

    Returns ``(features [T, 263] float32, joints [T, 22, 3] float32)`` with T =
    ``plan.num_frames``: :func:`render_motion` (T+1 poses) -> ``joints_to_features`` (T rows,
    HumanML3D processing: floor, start at the origin facing +Z, IK 6D, velocities, contacts),
    cast to float32 -> ``recover_joints`` (what ``new_joints`` holds). ``rng`` only matters for
    actions with a random detail (turn-around direction, jump distance); ``style`` defaults to
    the neutral performer.
    """
    from mate.data.features import joints_to_features, recover_joints

    if not isinstance(plan, MotionPlan) or not plan.segments:
        raise ValueError("plan must be a MotionPlan with at least one segment")
    for segment in plan.segments:
        if segment.action not in ACTIONS:
            raise ValueError(f"unknown action {segment.action!r}; known: {sorted(ACTIONS)}")
        if segment.speed not in ("quick", "normal", "slow"):
            raise ValueError(f"speed must be 'quick', 'normal' or 'slow', got {segment.speed!r}")
        if not 1 <= segment.active <= segment.frames:
            raise ValueError(f"segment {segment.action!r}: need 1 <= active ({segment.active}) "
                             f"<= frames ({segment.frames})")
        if segment.overlay is not None and not (segment.overlay.startswith("wave_")
                                                and segment.overlay in ACTIONS):
            raise ValueError(f"overlay must be a wave action, got {segment.overlay!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    world_joints = render_motion(plan, rng, style)                              # [T+1, 22, 3]
    features = joints_to_features(world_joints, "humanml3d").astype(np.float32)  # [T, 263]
    joints = recover_joints(features)                                           # [T, 22, 3]
    return features, joints


def generate_motion(seed: int, index: int) -> SyntheticMotion:
    """Motion number ``index`` of the dataset with ``seed`` (pure function of both).

    Two independent generators are spawned from ``SeedSequence([seed, index])``: one for the
    motion (plan, performer style, kinematics), one for the captions, so changing the caption
    grammar never changes a motion.
    """
    seed = _check_seed(seed)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    motion_seq, caption_seq = np.random.SeedSequence([seed, int(index)]).spawn(2)
    motion_rng = np.random.default_rng(motion_seq)
    caption_rng = np.random.default_rng(caption_seq)
    plan = plan_motion(motion_rng)
    features, joints = motion_from_plan(plan, motion_rng, style=_Style.sample(motion_rng))
    count = 3 + int(caption_rng.random() < FOURTH_CAPTION_PROBABILITY)
    captions = tuple(generate_captions(plan, caption_rng, count))
    return SyntheticMotion(motion_id(int(index)), plan, features, joints, captions)


# --------------------------------------------------------------------------------------------
# Statistics and splits
# --------------------------------------------------------------------------------------------

#: HumanML3D's ``mean_variance`` groups of the 263 channels, each given its mean std.
_STD_GROUPS = ((0, 1), (1, 3), (3, 4), (4, 67), (67, 193), (193, 259), (259, 263))


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations (float64 [D]) of a set of feature rows;
    merged with Chan et al.'s pairwise update, which is exact and order-defined:
    mean = mean_a + δ n_b/n, M2 = M2_a + M2_b + δ² n_a n_b / n, δ = mean_b − mean_a."""

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray) -> "_Moments":
        rows = np.asarray(rows, dtype=np.float64)
        mean = rows.mean(axis=0)
        return cls(rows.shape[0], mean, ((rows - mean) ** 2).sum(axis=0))

    def merge(self, other: "_Moments") -> "_Moments":
        if self.count == 0:
            return other
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / total)
        return _Moments(total, mean, m2)


def _finish_statistics(moments: _Moments) -> tuple[np.ndarray, np.ndarray]:
    if moments.count == 0:
        raise ValueError("cannot compute feature statistics of zero frames")
    std = np.sqrt(moments.m2 / moments.count)  # population std, like numpy's default
    for lo, hi in _STD_GROUPS:
        std[lo:hi] = std[lo:hi].mean()
    std = np.maximum(std, STD_FLOOR)
    return moments.mean.astype(np.float32), std.astype(np.float32)


def feature_statistics(features: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D-style Mean and Std, each ``(263,)`` float32, over all rows of ``features``
    (an iterable of ``[T_i, 263]`` arrays): per-channel mean; per-channel population std,
    averaged within each feature group (root rotation velocity, root linear velocity, root
    height, positions, rotations, velocities, foot contacts) as HumanML3D's ``mean_variance``
    does, then floored at :data:`STD_FLOOR`. Raises ValueError for no rows or a wrong width."""
    moments = _Moments(0, np.zeros(FEATURE_DIM), np.zeros(FEATURE_DIM))
    for array in features:
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != FEATURE_DIM or array.shape[0] == 0:
            raise ValueError(f"features must be [T, {FEATURE_DIM}] with T >= 1, got "
                             f"{array.shape}")
        moments = moments.merge(_Moments.of(array))
    return _finish_statistics(moments)


def split_ids(num_motions: int, seed: int) -> dict[str, list[str]]:
    """Seeded train/val/test split of ids ``motion_id(0..num_motions-1)``: 80/5/15 % (val and
    test at least one motion each once there are 3 motions), each list sorted; "all" is every
    id in order."""
    if num_motions < 1:
        raise ValueError(f"num_motions must be >= 1, got {num_motions}")
    seed = _check_seed(seed)
    order = np.random.default_rng([seed, 0x53504C4954]).permutation(num_motions)  # "SPLIT"
    n_val = max(1, round(SPLIT_FRACTIONS[1] * num_motions)) if num_motions >= 3 else 0
    n_test = max(1, round(SPLIT_FRACTIONS[2] * num_motions)) if num_motions >= 3 else 0
    n_train = num_motions - n_val - n_test
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:]}
    splits = {name: [motion_id(int(i)) for i in np.sort(idx)] for name, idx in parts.items()}
    splits["all"] = [motion_id(i) for i in range(num_motions)]
    return splits


# --------------------------------------------------------------------------------------------
# Writing a dataset
# --------------------------------------------------------------------------------------------

def _write_motion(out_dir: Path, motion: SyntheticMotion) -> None:
    np.save(out_dir / "new_joint_vecs" / f"{motion.id}.npy", motion.features)
    np.save(out_dir / "new_joints" / f"{motion.id}.npy", motion.joints)
    with open(out_dir / "texts" / f"{motion.id}.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(motion.text_lines()) + "\n")


def _worker_init() -> None:
    # One process per core: keep torch (imported by mate.data.features) single-threaded.
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover - torch is a dependency, but never fail a worker on it
        pass


def _generate_and_write(task: tuple[str, int, int]) -> tuple[int, list[dict], _Moments]:
    out_dir, seed, index = task
    motion = generate_motion(seed, index)
    _write_motion(Path(out_dir), motion)
    return index, motion.segment_entries(), _Moments.of(motion.features)


def _resolve_workers(workers: int | None, num_motions: int) -> int:
    if workers is None or workers == 0:
        if num_motions < 500:
            return 1
        return max(1, min(os.cpu_count() or 1, 8))
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer (0 = automatic), got "
                         f"{workers!r}")
    return int(workers)


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`write_dataset` wrote: directory, motion and caption counts, total feature
    frames, split sizes, worker count and wall time in seconds."""

    out_dir: str
    num_motions: int
    num_captions: int
    num_frames: int
    split_sizes: dict
    workers: int
    seconds: float


def write_dataset(out_dir: str | os.PathLike, num_motions: int, seed: int = 0,
                  workers: int | None = None, progress: bool | None = None) -> DatasetSummary:
    """Generate ``num_motions`` motions and write them in the HumanML3D layout (see the module
    docstring) under ``out_dir`` (created; files of the same names are overwritten).

    Args:
        out_dir: output directory.
        num_motions: >= 1 (HumanML3D scale: 14616).
        seed: non-negative integer; the same seed gives byte-identical files.
        workers: processes (None or 0: 1 below 500 motions, else min(cores, 8)); the output
            does not depend on it.
        progress: tqdm bar (None: only from 1000 motions).

    Returns:
        :class:`DatasetSummary`.
    """
    if isinstance(num_motions, bool) or not isinstance(num_motions, (int, np.integer)) \
            or num_motions < 1:
        raise ValueError(f"num_motions must be a positive integer, got {num_motions!r}")
    num_motions = int(num_motions)
    seed = _check_seed(seed)
    workers = _resolve_workers(workers, num_motions)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory")
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    splits = split_ids(num_motions, seed)
    train = np.zeros(num_motions, dtype=bool)
    train[[int(i) for i in splits["train"]]] = True

    started = time.perf_counter()
    tasks = [(str(out), seed, i) for i in range(num_motions)]
    show = num_motions >= 1000 if progress is None else bool(progress)
    segments: dict[str, list[dict]] = {}
    moments = _Moments(0, np.zeros(FEATURE_DIM), np.zeros(FEATURE_DIM))
    num_captions = num_frames = 0
    pool = None
    try:
        if workers > 1:
            import multiprocessing

            # Not plain fork: torch's thread pools do not survive fork if the caller used them.
            # A forkserver that preloads the feature code (numpy + torch) forks workers without
            # re-importing torch (spawn re-imports it in every worker, ~2-3 s each); spawn
            # where there is no forkserver.
            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["mate.data.features"])
            else:  # pragma: no cover - Windows
                context = multiprocessing.get_context("spawn")
            pool = context.Pool(workers, initializer=_worker_init)
            results = pool.imap(_generate_and_write, tasks, chunksize=16)
        else:
            results = map(_generate_and_write, tasks)
        if show:
            from tqdm import tqdm

            results = tqdm(results, total=num_motions, desc="synthetic motions", unit="motion")
        for index, entries, motion_moments in results:  # in index order: deterministic sums
            segments[motion_id(index)] = entries
            num_captions += len(entries)
            num_frames += motion_moments.count
            if train[index]:
                moments = moments.merge(motion_moments)
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    mean, std = _finish_statistics(moments)
    np.save(out / "Mean.npy", mean)
    np.save(out / "Std.npy", std)
    for name, ids in splits.items():
        with open(out / f"{name}.txt", "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(f"{i}\n" for i in ids))
    with open(out / "segments.json", "w", encoding="utf-8", newline="\n") as f:
        # One motion per line: valid JSON that diffs and greps well.
        f.write("{\n")
        f.write(",\n".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                           for k, v in segments.items()))
        f.write("\n}\n")
    return DatasetSummary(str(out), num_motions, num_captions, num_frames,
                          {k: len(v) for k, v in splits.items()}, workers,
                          time.perf_counter() - started)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _parse_int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def main(argv: Sequence[str] | None = None) -> DatasetSummary:
    """``python -m mate.data.synthetic --out DIR --motions N --seed S [--workers W]
    [--progress/--no-progress]``. Raises ValueError naming the bad argument."""
    parser = argparse.ArgumentParser(
        prog="python -m mate.data.synthetic",
        description="Write the synthetic compositional text-motion benchmark in the HumanML3D "
                    "layout (new_joint_vecs, new_joints, texts, Mean/Std, splits, "
                    "segments.json).")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--motions", default="1000",
                        help="number of motions (HumanML3D scale: 14616); default 1000")
    parser.add_argument("--seed", default="0", help="non-negative integer seed; default 0")
    parser.add_argument("--workers", default="0",
                        help="worker processes, 0 = automatic (default); output is identical "
                             "for any value")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: from 1000 motions)")
    args = parser.parse_args(argv)
    if not str(args.out).strip():
        raise ValueError("--out must be a directory path, got an empty string")
    summary = write_dataset(args.out, _parse_int("--motions", args.motions, 1),
                            seed=_parse_int("--seed", args.seed, 0),
                            workers=_parse_int("--workers", args.workers, 0),
                            progress=args.progress)
    print(f"wrote {summary.num_motions} motions, {summary.num_captions} captions, "
          f"{summary.num_frames} frames to {summary.out_dir} "
          f"(train/val/test {summary.split_sizes['train']}/{summary.split_sizes['val']}/"
          f"{summary.split_sizes['test']}) with {summary.workers} worker(s) in "
          f"{summary.seconds:.1f} s")
    return summary


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
