"""The action inventory of the synthetic benchmark, and how a motion strings actions together.

This module owns:

* :class:`ActionSpec` and :data:`ACTIONS`: every action's name, renderer (in
  :mod:`.kinematics`), side or direction, kind, speeds and frame ranges, and the caption
  templates that name it (the grammar that fills them in is :mod:`.captions`);
* plans: :class:`Segment`, :class:`MotionPlan` and :func:`plan_motion`, which samples 1-4
  segments that respect the held state (arms up, seated) and the length limits;
* :func:`render_motion`: a plan's joint positions.

Every motion is a time sequence of 1-4 *segments*, each one action (or one locomotion with a
simultaneous wave), with speed "quick" (shorter, faster), "normal" or "slow" (longer, slower).
How long an action lasts follows a *duration profile* (:data:`DURATION_PROFILES`):
``realistic`` (the default) gives each kind of action its own range, as in HumanML3D where a walk
lasts many seconds beside a half-second kick (locomotion 1.5-7.5 s, circles 2.5-7.5 s, waves
0.8-3.5 s, turns, kicks, jumps and arm raises 0.5-2 s); ``uniform`` (the sets generated before
it existed) draws every action from 1-3 s (20-60 frames; circles 1.5-3 s), so that cutting a
motion into equal parts is already nearly right. The motion is 40..196 frames
(``MIN_FRAMES``/``MAX_FRAMES``: HumanML3D's length filter and crop, from
:data:`mate.data.skeleton.HUMANML3D`). The inventory:

* locomotion: walk_forward / walk_backward, jog, run, walk_upstairs / walk_downstairs,
  sidestep_left / sidestep_right, circle_counterclockwise / circle_clockwise;
* turns: turn_left / turn_right (90°), turn_around (180°, either way);
* whole body: jump, jump_forward, squat, kick_left_leg / kick_right_leg;
* arms (also while seated): raise_left_hand / raise_right_hand / raise_both_arms and their
  lower_* antonyms (the arm stays up in between), wave_left_hand / wave_right_hand (also
  simultaneously with walking, turning, circling or side-stepping: one "while" segment);
* posture: sit_down / stand_up (seated in between: only arm actions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mate.data.skeleton import HUMANML3D
from mate.data.synthetic.kinematics import (
    ARM_JOINTS, _circle_counterclockwise, _Clip, _jog, _jump, _jump_forward, _kick_left_leg,
    _lower_both_arms, _lower_left_hand, _raise_both_arms, _raise_left_hand, _run,
    _sidestep_left, _sit_down, _squat, _stairs, _stand_up, _Style, _turn_around, _turn_left,
    _walk, _walk_backward, _walk_downstairs, _wave_left_hand, animate,
)

#: A motion has MIN_FRAMES <= T <= MAX_FRAMES feature frames: HumanML3D's length filter keeps
#: 40 <= T < 200 and crops to 196, so a generated motion is never cropped.
MIN_FRAMES = HUMANML3D.min_frames
MAX_FRAMES = HUMANML3D.crop_frames
#: Shortest action (1 s) and longest (3 s), in frames, of the ``uniform`` profile.
MIN_ACTION_FRAMES = 20
MAX_ACTION_FRAMES = 60
#: How long actions last: ``realistic`` (default) or ``uniform`` (module docstring).
DURATION_PROFILES = ("realistic", "uniform")
#: Shortest (0.5 s: one segmentation grid unit) and longest action of the ``realistic`` profile.
REALISTIC_MIN_ACTION_FRAMES = 10
REALISTIC_MAX_ACTION_FRAMES = 150

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
    :func:`.captions._phrase_words`).
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

# The realistic profile: (quick, normal, slow) frame ranges at 20 fps per kind of action; an
# action that is not speedable uses the middle one.
_GAIT, _CIRCLE, _SHORT = ((30, 60), (50, 110), (80, 150)), ((50, 80), (70, 120), (100, 150)), ((10, 16), (14, 28), (24, 40))
_REALISTIC_FRAMES = {
    "walk_forward": _GAIT, "walk_backward": _GAIT, "walk_upstairs": _GAIT, "walk_downstairs": _GAIT,
    "sidestep_left": _GAIT, "sidestep_right": _GAIT, "jog": ((0, 0), (40, 120), (0, 0)),
    "run": ((0, 0), (30, 100), (0, 0)), "circle_clockwise": _CIRCLE, "circle_counterclockwise": _CIRCLE,
    "turn_left": _SHORT, "turn_right": _SHORT, "turn_around": ((12, 20), (18, 32), (28, 44)),
    "jump": ((0, 0), (12, 24), (0, 0)), "jump_forward": ((0, 0), (12, 24), (0, 0)),
    "kick_left_leg": ((0, 0), (10, 20), (0, 0)), "kick_right_leg": ((0, 0), (10, 20), (0, 0)),
    "squat": ((16, 24), (20, 36), (32, 50)), "sit_down": ((16, 24), (20, 36), (30, 50)),
    "stand_up": ((16, 24), (20, 36), (30, 50)),
    "raise_left_hand": _SHORT, "raise_right_hand": _SHORT, "raise_both_arms": _SHORT,
    "lower_left_hand": _SHORT, "lower_right_hand": _SHORT, "lower_both_arms": _SHORT,
    "wave_left_hand": ((16, 30), (24, 50), (40, 70)), "wave_right_hand": ((16, 30), (24, 50), (40, 70)),
}


def action_frame_limits(durations: str = "realistic") -> tuple[int, int]:
    """(shortest, longest) frames an action of a several-segment motion lasts under a profile."""
    _check_profile(durations)
    if durations == "uniform":
        return MIN_ACTION_FRAMES, MAX_ACTION_FRAMES
    return REALISTIC_MIN_ACTION_FRAMES, REALISTIC_MAX_ACTION_FRAMES


def _check_profile(durations: str) -> None:
    if durations not in DURATION_PROFILES:
        raise ValueError(f"durations must be one of {DURATION_PROFILES}, got {durations!r}")


def frame_range(spec: "ActionSpec", speed: str, durations: str = "realistic") -> tuple[int, int]:
    """(lo, hi) frames of ``spec`` at ``speed`` under a duration profile."""
    _check_profile(durations)
    if durations == "uniform":
        return spec.frame_range(speed)
    ranges = _REALISTIC_FRAMES[spec.name]
    return ranges[("quick", "normal", "slow").index(speed)] if spec.speedable else ranges[1]


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
assert set(_REALISTIC_FRAMES) == set(ACTIONS), "every action needs a realistic duration range"


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


def plan_motion(rng: np.random.Generator, durations: str = "realistic") -> MotionPlan:
    """Sample 1-4 segments obeying the held state (arms up, seated) and the length limits:
    each action's frames from its range under the ``durations`` profile (:func:`frame_range`;
    ``uniform``: 20-60 frames, quick 20-30, normal 30-44, slow 44-60), total ``MIN_FRAMES <= T <=
    MAX_FRAMES`` (too long or, for several short actions, too short: every segment scaled by one
    factor, none below the profile's shortest)."""
    _check_profile(durations)
    shortest = action_frame_limits(durations)[0]
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
        lo, hi = frame_range(spec, speed, durations)
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
    elif total < MIN_FRAMES:
        # Several short actions (realistic profile): stretch them by one factor to the minimum.
        sized = [int(np.ceil(s.frames * MIN_FRAMES / total)) for s in segments]
        while sum(sized) > MIN_FRAMES:
            sized[int(np.argmax(sized))] -= 1
        segments = [Segment(s.action, s.speed, f, f, s.overlay) for s, f in zip(segments, sized)]
    elif total > MAX_FRAMES:
        # Shrink proportionally (keeps quick < normal < slow ordering within a motion).
        scale = MAX_FRAMES / total
        sized = [max(shortest, int(s.frames * scale)) for s in segments]
        while sum(sized) > MAX_FRAMES:
            sized[int(np.argmax(sized))] -= 1
        segments = [Segment(s.action, s.speed, f, f, s.overlay) for s, f in zip(segments, sized)]
    return MotionPlan(tuple(segments))


# --------------------------------------------------------------------------------------------
# Rendering: plan -> joint positions
# --------------------------------------------------------------------------------------------

def _render_clip(segment: Segment, style: _Style, rng: np.random.Generator) -> _Clip:
    """A segment's clip: its action's rendering (mirrored for the right / clockwise version),
    with the wave's arm joints laid over it in a "while" segment, held to the segment's length."""
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
    feature frames; HumanML3D features have one frame fewer than the joints they come from):
    each segment's clip, in time order, through :func:`.kinematics.animate` (see there for how
    the clips are joined, grounded and moved through the world). ``style`` defaults to the
    neutral performer; ``rng`` draws the random details of some actions (turn-around direction,
    jump distance).
    """
    style = style or _Style()
    clips = [_render_clip(segment, style, rng) for segment in plan.segments]
    return animate(clips, plan.bounds)
