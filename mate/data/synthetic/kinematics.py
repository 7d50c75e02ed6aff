"""Kinematics of the synthetic benchmark: the body, its rotations, and how each action moves it.

This module owns everything between "an action of n frames" and "world joint positions":

* the 22-joint HumanML3D skeleton as the generator poses it (joint indices, the mirror map, the
  neutral rest pose, the target skeleton's bone lengths :data:`OFFSETS`);
* Euler-angle poses and their conversion to HumanML3D local rotations
  (:func:`euler_to_matrix`, :func:`pose_to_local_rotations`);
* time profiles (smoothstep ramps, envelopes, keyframes) and :class:`_Clip`, what one action
  contributes over its frames;
* the renderers ``(frames, speed, style, rng) -> _Clip`` of every action, in their canonical
  ("left", "counterclockwise") version; :mod:`.actions` lists them in the inventory;
* :func:`animate`, which strings clips together and places the body in the world.

Motions are posed by *local joint rotations* on the target skeleton
(:data:`mate.data.skeleton.HUMANML3D_TARGET_OFFSETS`) and placed by
:func:`mate.data.skeleton.forward_kinematics`, so bone lengths are exactly constant. The root is
moved by the legs: each frame one foot is the stance foot (the gait's stance leg, else the lower
foot) and the pelvis moves opposite to that foot's motion relative to the pelvis, so a planted
foot does not skate; the root height keeps the lowest foot joint on the ground (plus the stair
level and the flight of jumps). Walking = alternating leg swing, the stance sweep carrying the
root along the facing direction; turning = root yaw while stepping in place; circles = walking
while the yaw turns a full 2π; stairs = high knee lifts while the floor level rises or falls one
16 cm step per step; jumps = crouch, ballistic flight, landing.

Coordinate conventions (HumanML3D's): y is up, the motion starts at the origin facing +Z, the
person's left is +X. A yaw rotation by +θ about +y turns the facing direction from +Z towards +X,
i.e. to the person's *left*; seen from above (looking down the -y axis) that is
**counterclockwise**. So: "turn left" = positive yaw rate, "turn right" = negative;
"walk in a circle counterclockwise" = walk forward while turning left (positive yaw rate), the
root path seen from above goes counterclockwise; "clockwise" = negative yaw rate. (HumanML3D's
feature 0 stores the rotation velocity of the *inverse* heading, so its sign is the opposite:
feature 0 > 0 means turning right / clockwise.)

Left/right and clockwise/counterclockwise versions are exact mirror images (x -> -x) of one
rendering (:meth:`_Clip.mirrored`); quick/slow change the step rate and amplitude of gaits, and
the duration (hence speed) of everything else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from mate.data import skeleton as _skel

#: Frame rate and joint count of the HumanML3D representation the generator writes.
FPS = _skel.HUMANML3D.fps
NUM_JOINTS = _skel.HUMANML3D.num_joints

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
    With the stance-foot rule of :func:`animate` the pelvis advances 2·L·sin(hip) per step
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


# --------------------------------------------------------------------------------------------
# Renderers: (frames, speed, style, rng) -> _Clip, canonical ("left") version
# --------------------------------------------------------------------------------------------

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


def _bend_legs(angles: np.ndarray, flex: np.ndarray, lean: np.ndarray) -> None:
    """Crouch in place (jump, squat): both hips flex by ``flex``, both knees by 2·flex (the foot
    stays under the hip when thigh ≈ shin), the feet stay level, and the trunk leans forward by
    ``lean`` shared among the three spine joints (all ``[n+1]`` radians)."""
    for side in ("left", "right"):
        hip, knee, _ = LEG_JOINTS[side]
        angles[:, hip, 0] = -flex
        angles[:, knee, 0] = 2.0 * flex
    _flat_feet(angles)
    for j in SPINE_JOINTS:
        angles[:, j, 0] = lean / 3.0


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
    _bend_legs(a, 50 * _DEG * style.amplitude * depth, 25 * _DEG * depth)
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
    _bend_legs(a, 62 * _DEG * style.amplitude * depth, 35 * _DEG * depth)
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
# Animation: consecutive clips -> world joint positions
# --------------------------------------------------------------------------------------------

def animate(clips: Sequence[_Clip], bounds: Sequence[int]) -> np.ndarray:
    """World joint positions ``[T + 1, 22, 3]`` float64 of consecutive clips (T = ``bounds[-1]``
    feature frames; HumanML3D features have one frame fewer than the joints they come from).
    Clip k covers joint frames ``bounds[k] .. bounds[k+1]``, both ends included.

    Steps: (1) concatenate the clips on top of the held pose (arms raised, seated); arm deltas
    are suppressed while that arm is held up. (2) Forward kinematics in the body frame (no yaw,
    root at the origin). (3) Root height = floor level + flight − lowest foot joint, so the lowest
    foot touches the floor. (4) Stance foot = the one the clip names (gaits), else the side whose
    lower foot joint is lower; the root moves by minus that foot's body-frame displacement (plus
    the clip's explicit push), rotated by the heading. So a planted foot does not slide (while
    the heading is constant). (5) Forward kinematics in the world.
    """
    angles, yaw, ground, lift, push, stance, states = _timeline(clips, bounds)
    _apply_held_states(angles, states)
    return _place_in_world(angles, yaw, ground, lift, push, stance)


def _timeline(clips: Sequence[_Clip], bounds: Sequence[int]):
    """Step (1) of :func:`animate`: the clips' tracks over all ``bounds[-1] + 1`` joint frames.
    Yaw and floor level continue from where the previous clip left them; a held state (arm
    elevation, seated) keeps its last value through clips that do not change it."""
    n_joint = bounds[-1] + 1
    angles = np.zeros((n_joint, NUM_JOINTS, 3))
    yaw = np.zeros(n_joint)
    ground = np.zeros(n_joint)
    lift = np.zeros(n_joint)
    push = np.zeros((n_joint, 2))
    stance = np.zeros(n_joint)
    state_tracks = {k: np.zeros(n_joint) for k in ("arm_left", "arm_right", "seated")}
    held = {k: 0.0 for k in state_tracks}
    yaw0 = ground0 = 0.0
    for start, end, clip in zip(bounds[:-1], bounds[1:], clips):
        stop = end + 1  # clips include their end instant
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
    return angles, yaw, ground, lift, push, stance, state_tracks


def _apply_held_states(angles: np.ndarray, state_tracks: dict[str, np.ndarray]) -> None:
    """Blend the held poses into ``angles`` in place, by their tracks in [0, 1]; an arm's own
    action deltas fade out as that arm is raised."""
    for side in ("left", "right"):
        elevation = state_tracks[f"arm_{side}"][:, None]
        for j in ARM_JOINTS[side]:
            angles[:, j] *= 1.0 - elevation
    angles += state_tracks["arm_left"][:, None, None] * RAISED_LEFT_ARM_POSE
    angles += state_tracks["arm_right"][:, None, None] * RAISED_RIGHT_ARM_POSE
    angles += state_tracks["seated"][:, None, None] * SEATED_POSE


def _place_in_world(angles: np.ndarray, yaw: np.ndarray, ground: np.ndarray, lift: np.ndarray,
                    push: np.ndarray, stance: np.ndarray) -> np.ndarray:
    """Steps (2)-(5) of :func:`animate`: body-frame FK, grounding, stance-foot root motion, world
    FK."""
    n_joint = angles.shape[0]
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
