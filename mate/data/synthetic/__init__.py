"""Synthetic compositional text-motion benchmark, written in the HumanML3D layout.

``python -m mate.data.synthetic --out DIR --motions N --seed S`` (or :func:`write_dataset`)
writes a complete dataset that the real loader (:class:`mate.data.dataset.MotionTextDataset`)
reads unchanged: features, joints, POS-tagged captions, Mean/Std and splits, plus
``segments.json``, the ground truth of every caption. ``docs/data.md`` describes the files.

Why it exists: every motion is a time sequence of 1-4 *segments*, each one action (or one
locomotion with a simultaneous wave), and the captions are built from the same segment list, so
the ground-truth sub-texts and their frame boundaries are known exactly. The action inventory is
full of antonym pairs that a sentence-level encoder blurs and a word-level one must separate:
left/right, clockwise/counterclockwise, forward/backward, up/down, quickly/slowly, raise/lower,
sit down/stand up.

The package, by concern:

* :mod:`.kinematics`: the skeleton as the generator poses it, joint rotations, every action's
  motion and the placement of the body in the world;
* :mod:`.actions`: the action inventory (:data:`ACTIONS`) and plans (:func:`plan_motion`,
  :func:`render_motion`);
* :mod:`.captions`: the caption grammar (:func:`generate_captions`);
* :mod:`.writer`: one motion's arrays and captions (:func:`generate_motion`), Mean/Std, splits,
  :func:`write_dataset` and the command line.

The frame rate, feature width and length limits are HumanML3D's, read from
:data:`mate.data.skeleton.HUMANML3D`.
"""
# Every public name of the former single module mate/data/synthetic.py stays importable from
# here (``__all__`` is unchanged; the joint indices, poses and constants beyond it are re-exported
# for the code and tests that use them).
from mate.data.synthetic.actions import (  # noqa: F401
    ACTIONS, DURATION_PROFILES, MAX_ACTION_FRAMES, MAX_FRAMES, MIN_ACTION_FRAMES, MIN_FRAMES, ActionSpec,
    MotionPlan, Segment, action_frame_limits, frame_range, plan_motion, render_motion,
)
from mate.data.synthetic.captions import CaptionRecord, generate_captions
from mate.data.synthetic.kinematics import (  # noqa: F401
    ARM_JOINTS, FOOT_JOINTS, FPS, HEAD, L_ANKLE, L_COLLAR, L_ELBOW, L_FOOT, L_HIP, L_KNEE,
    L_SHOULDER, L_WRIST, LEG_JOINTS, MIRROR_JOINTS, NECK, NEUTRAL_BONE_ROTATIONS, NUM_JOINTS,
    OFFSETS, PARENTS, PELVIS, R_ANKLE, R_COLLAR, R_ELBOW, R_FOOT, R_HIP, R_KNEE, R_SHOULDER,
    R_WRIST, RAISED_LEFT_ARM_POSE, RAISED_RIGHT_ARM_POSE, SEATED_POSE, SPINE1, SPINE2, SPINE3,
    SPINE_JOINTS, euler_to_matrix, pose_to_local_rotations,
)
from mate.data.synthetic.writer import (  # noqa: F401
    FEATURE_DIM, FOURTH_CAPTION_PROBABILITY, SPLIT_FRACTIONS, STD_FLOOR, DatasetSummary,
    SyntheticMotion, feature_statistics, generate_motion, main, motion_from_plan, motion_id,
    split_ids, write_dataset,
)

__all__ = [
    "FPS", "FEATURE_DIM", "NUM_JOINTS", "MIN_FRAMES", "MAX_FRAMES", "MIN_ACTION_FRAMES",
    "MAX_ACTION_FRAMES", "DURATION_PROFILES", "action_frame_limits", "frame_range", "STD_FLOOR", "ACTIONS", "MIRROR_JOINTS", "NEUTRAL_BONE_ROTATIONS",
    "ActionSpec", "Segment", "MotionPlan", "CaptionRecord", "SyntheticMotion", "DatasetSummary",
    "euler_to_matrix", "pose_to_local_rotations", "plan_motion", "render_motion",
    "motion_from_plan", "generate_captions", "generate_motion", "feature_statistics", "split_ids",
    "motion_id", "write_dataset", "main",
]
