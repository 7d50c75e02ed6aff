"""The synthetic compositional benchmark (mate.data.synthetic): files, determinism, ground truth,
and that the antonym pairs really move the body in the directions their words say.

Conventions checked (see the module docstring): y up, the motion starts at the origin facing +Z,
the person's left is +X; a positive yaw rate about +y turns left = counterclockwise seen from
above.
"""
from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mate.data import synthetic as syn
from mate.data.features import recover_joints
from mate.data.skeleton import HUMANML3D_PARENTS, HUMANML3D_TARGET_BONE_LENGTHS, bone_lengths

NUM_MOTIONS = 8
SEED = 3
L_WRIST, R_WRIST, L_FOOT, R_FOOT = 20, 21, 10, 11


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "a"
    syn.write_dataset(out, NUM_MOTIONS, seed=SEED, workers=1, progress=False)
    return out


def _ids(root: Path) -> list[str]:
    return (root / "all.txt").read_text().split()


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---- files -------------------------------------------------------------------------------------

def test_layout_shapes_and_dtypes(tiny):
    ids = _ids(tiny)
    assert ids == [f"{i:06d}" for i in range(NUM_MOTIONS)]
    for motion_id in ids:
        features = np.load(tiny / "new_joint_vecs" / f"{motion_id}.npy")
        joints = np.load(tiny / "new_joints" / f"{motion_id}.npy")
        assert features.dtype == np.float32 and joints.dtype == np.float32
        assert features.ndim == 2 and features.shape[1] == 263
        assert syn.MIN_FRAMES <= features.shape[0] <= syn.MAX_FRAMES
        assert joints.shape == (features.shape[0], 22, 3)
        assert np.isfinite(features).all()
    for name in ("Mean.npy", "Std.npy"):
        stat = np.load(tiny / name)
        assert stat.shape == (263,) and stat.dtype == np.float32 and np.isfinite(stat).all()
    assert (np.load(tiny / "Std.npy") >= syn.STD_FLOOR).all()


def test_splits_partition_the_ids(tiny):
    splits = {name: (tiny / f"{name}.txt").read_text().split() for name in
              ("train", "val", "test")}
    assert all(splits.values()), "each split non-empty from 3 motions"
    union = sorted(splits["train"] + splits["val"] + splits["test"])
    assert union == _ids(tiny)
    assert len(splits["train"]) >= 0.7 * NUM_MOTIONS


def test_mean_std_are_the_train_split_statistics(tiny):
    train = (tiny / "train.txt").read_text().split()
    mean, std = syn.feature_statistics(np.load(tiny / "new_joint_vecs" / f"{i}.npy") for i in train)
    np.testing.assert_array_equal(np.load(tiny / "Mean.npy"), mean)
    np.testing.assert_array_equal(np.load(tiny / "Std.npy"), std)
    rows = np.concatenate([np.load(tiny / "new_joint_vecs" / f"{i}.npy") for i in train])
    np.testing.assert_allclose(mean, rows.astype(np.float64).mean(0), atol=1e-6)
    # HumanML3D's mean_variance: one std per feature group (its mean over the group).
    raw = rows.astype(np.float64).std(0)
    for lo, hi in ((0, 1), (1, 3), (3, 4), (4, 67), (67, 193), (193, 259), (259, 263)):
        assert np.allclose(std[lo:hi], max(raw[lo:hi].mean(), syn.STD_FLOOR), rtol=1e-5)


def test_new_joints_are_recovered_features_with_constant_bones(tiny):
    for motion_id in _ids(tiny):
        features = np.load(tiny / "new_joint_vecs" / f"{motion_id}.npy")
        joints = np.load(tiny / "new_joints" / f"{motion_id}.npy")
        np.testing.assert_array_equal(recover_joints(features), joints)
        lengths = bone_lengths(joints.astype(np.float64), HUMANML3D_PARENTS)[:, 1:]
        assert np.abs(lengths - HUMANML3D_TARGET_BONE_LENGTHS[1:]).max() < 1e-5
        # HumanML3D floors the T+1 source poses; new_joints holds the first T of them
        assert -1e-5 < joints[..., 1].min() < 0.02, "the lowest joint is on the floor (y = 0)"
        np.testing.assert_allclose(joints[0, 0, [0, 2]], 0.0, atol=1e-6)


# Every verb lemma the templates use ("~walk" -> walk, "~side-step" -> sidestep), plus the two
# verbs written out in templates ("to face", "going").
_VERB_LEMMAS = {word[1:].split("|")[0].replace("-", "")
                for spec in syn.ACTIONS.values() for phrase in spec.phrases
                for word in phrase.split() if word.startswith("~")} | {"face", "go"}

_LINE = re.compile(r"^([^#]+)#((?:[a-z]+/[A-Z]+ ?)+)#0\.0#0\.0$")


def test_caption_lines_follow_the_humanml3d_format(tiny):
    for motion_id in _ids(tiny):
        lines = (tiny / "texts" / f"{motion_id}.txt").read_text().splitlines()
        assert 3 <= len(lines) <= 4
        assert len(set(lines)) == len(lines)
        for line in lines:
            match = _LINE.match(line)
            assert match, line
            caption, tokens = match.group(1), match.group(2).split()
            # HumanML3D's process_text: hyphens removed, alphabetic words only, one token each.
            words = [w for w in re.split(r"[\s,.]+", caption.replace("-", "")) if w.isalpha()]
            assert len(words) == len(tokens), (caption, tokens)
            for word, token in zip(words, tokens):
                lemma, pos = token.split("/")
                if pos not in ("NOUN", "VERB"):
                    assert lemma == word, (word, token)
            verbs = [t.split("/")[0] for t in tokens if t.endswith("/VERB")]
            assert verbs and set(verbs) <= _VERB_LEMMAS, tokens  # lemmas, never "walks"/"walking"


def test_caption_lines_parse_with_the_dataset_parser(tiny):
    from mate.data.dataset import parse_humanml3d_caption_line

    line = (tiny / "texts" / "000000.txt").read_text().splitlines()[0]
    caption, tokens, start, end = parse_humanml3d_caption_line(line)
    assert caption and tokens and start == 0.0 and end == 0.0


def test_segments_json_ground_truth(tiny):
    segments = json.loads((tiny / "segments.json").read_text())
    assert list(segments) == _ids(tiny)
    for motion_id, entries in segments.items():
        num_frames = np.load(tiny / "new_joint_vecs" / f"{motion_id}.npy").shape[0]
        lines = (tiny / "texts" / f"{motion_id}.txt").read_text().splitlines()
        assert [e["caption"] for e in entries] == [line.split("#")[0] for line in lines]
        for entry in entries:
            bounds = entry["bounds_frames"]
            assert bounds[0] == 0 and bounds[-1] == num_frames
            shortest = syn.action_frame_limits("realistic")[0]
            assert all(b - a >= shortest for a, b in zip(bounds, bounds[1:]))
            n = len(bounds) - 1
            assert 1 <= n <= 4
            assert len(entry["subtexts"]) == len(entry["actions"]) == len(entry["speeds"]) == n
            assert sorted(entry["text_order"]) == list(range(n))
            for k, (start, stop) in enumerate(entry["spans"]):
                assert entry["caption"][start:stop] == entry["subtexts"][k]
            # text_order lists the segments by where their sub-text starts in the caption
            starts = [entry["spans"][k][0] for k in entry["text_order"]]
            assert starts == sorted(starts)
            for actions in entry["actions"]:
                assert all(a in syn.ACTIONS for a in actions)
        # every caption of a motion describes the same segmentation
        assert len({json.dumps(e["bounds_frames"]) for e in entries}) == 1


# ---- determinism -------------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_files(tiny, tmp_path):
    again = tmp_path / "b"
    syn.write_dataset(again, NUM_MOTIONS, seed=SEED, workers=1, progress=False)
    files = _all_files(tiny)
    assert files == _all_files(again)
    match, mismatch, errors = filecmp.cmpfiles(tiny, again, files, shallow=False)
    assert not mismatch and not errors


def test_other_seed_gives_other_motions(tiny):
    other = syn.generate_motion(SEED + 1, 0)
    assert not np.array_equal(other.features,
                              np.load(tiny / "new_joint_vecs" / "000000.npy"))


def test_motion_depends_only_on_seed_and_index(tiny):
    motion = syn.generate_motion(SEED, 5)
    np.testing.assert_array_equal(motion.features, np.load(tiny / "new_joint_vecs" / "000005.npy"))
    assert motion.text_lines() == (tiny / "texts" / "000005.txt").read_text().splitlines()


@pytest.mark.slow
def test_worker_processes_do_not_change_the_output(tiny, tmp_path):
    parallel = tmp_path / "c"
    syn.write_dataset(parallel, NUM_MOTIONS, seed=SEED, workers=2, progress=False)
    files = _all_files(tiny)
    _, mismatch, errors = filecmp.cmpfiles(tiny, parallel, files, shallow=False)
    assert not mismatch and not errors


# ---- captions ----------------------------------------------------------------------------------

_QUICK = {"quickly", "fast", "rapidly"}
_SLOW = {"slowly", "slow"}


def test_caption_words_match_the_segment_actions():
    """Across many plans: each sub-text names its own side/direction and speed, never the
    antonym."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        plan = syn.plan_motion(rng)
        for caption in syn.generate_captions(plan, rng, 3):
            assert len(caption.subtexts) == len(plan.segments)
            for segment, subtext in zip(plan.segments, caption.subtexts):
                words = set(subtext.replace("-", "").split())
                name = segment.action
                if name.startswith("circle_"):
                    ccw = bool(words & {"counterclockwise", "anticlockwise"})
                    assert ccw == (name == "circle_counterclockwise"), subtext
                    assert "clockwise" in words or ccw, subtext
                elif not segment.overlay:
                    side = syn.ACTIONS[name].side
                    if side:
                        assert side in words, subtext
                        assert ({"left", "right"} - {side}).isdisjoint(words), subtext
                if segment.speed == "quick":
                    assert words & _QUICK and not words & _SLOW, subtext
                elif segment.speed == "slow":
                    assert words & _SLOW and not words & _QUICK, subtext
                else:
                    assert not words & (_QUICK | _SLOW), subtext


def test_reordering_connectors_keep_time_order():
    """"X before Y-ing", "before Y-ing, X", "Y after X-ing", "Y, but before that X": sub-texts
    are listed in time order whatever the text order."""
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(400):
        plan = syn.plan_motion(rng)
        for caption in syn.generate_captions(plan, rng, 3):
            order = caption.text_order
            if list(order) != sorted(order):
                k = next(i for i in range(len(order) - 1) if order[i] > order[i + 1])
                later, earlier = caption.subtexts[order[k]], caption.subtexts[order[k + 1]]
                between = caption.text[caption.spans[order[k]][1]:caption.spans[order[k + 1]][0]]
                seen.add(between.strip(" ,"))
                assert between.strip(" ,") in ("after", "but before that", ""), caption.text
                if between.strip(" ,") == "":  # "before Y-ing, X": Y is the gerund
                    assert caption.text.startswith("before ")
                assert later and earlier
    assert {"after", "but before that", ""} <= seen


def test_while_segments_describe_both_actions():
    rng = np.random.default_rng(2)
    found = 0
    for _ in range(300):
        plan = syn.plan_motion(rng)
        for k, segment in enumerate(plan.segments):
            if segment.overlay:
                found += 1
                for caption in syn.generate_captions(plan, rng, 3):
                    words = caption.subtexts[k].split()
                    assert "wav" in " ".join(words) and (
                        "while" in words or "same" in words), caption.subtexts[k]
    assert found > 0


# ---- plans -------------------------------------------------------------------------------------

@pytest.mark.parametrize("durations", syn.DURATION_PROFILES)
def test_plans_respect_lengths_and_held_states(durations):
    rng = np.random.default_rng(4)
    counts = {1: 0, 2: 0, 3: 0, 4: 0}
    shortest, longest = syn.action_frame_limits(durations)
    for _ in range(2000):
        plan = syn.plan_motion(rng, durations)
        counts[len(plan.segments)] += 1
        assert syn.MIN_FRAMES <= plan.num_frames <= syn.MAX_FRAMES
        seated, arm_up = False, {"left": False, "right": False}
        for segment in plan.segments:
            assert shortest <= segment.active <= segment.frames
            assert segment.frames <= longest or len(plan.segments) == 1
            name, spec = segment.action, syn.ACTIONS[segment.action]
            sides = ("left", "right") if spec.side is None else (spec.side,)
            if seated:
                assert spec.kind == "arm" or name == "stand_up", plan
            if name.startswith("lower_"):
                assert all(arm_up[s] for s in sides), plan
                arm_up.update({s: False for s in sides})
            if name.startswith("raise_"):
                assert not any(arm_up[s] for s in sides), plan
                arm_up.update({s: True for s in sides})
            if name.startswith("wave_") or segment.overlay:
                waving = (segment.overlay or name).split("_")[1]
                assert not arm_up[waving], plan
            seated = {"sit_down": True, "stand_up": False}.get(name, seated)
            if segment.active < segment.frames:  # a single short action, then a still hold
                assert len(plan.segments) == 1 and not spec.cyclic
    assert min(counts.values()) > 100


def test_local_rotations_reproduce_the_authored_pose():
    """pose_to_local_rotations converts "joint j turns its subtree" angles into the HumanML3D
    FK convention (L_j turns the bone ending at j, chains restart at the root); FK of the result
    equals the authored positions x_j = x_p + A_p N_j offsets_j, A_j = A_p E_j,
    A_0 = Ry(yaw) E_0."""
    from mate.data.skeleton import forward_kinematics

    rng = np.random.default_rng(5)
    angles = rng.uniform(-1.0, 1.0, size=(7, 22, 3))
    yaw = rng.uniform(-3.0, 3.0, size=7)
    root = rng.normal(size=(7, 3))
    joint_rot = syn.euler_to_matrix(angles)
    c, s_ = np.cos(yaw), np.sin(yaw)
    ry = np.zeros((7, 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = c, s_, 1.0, -s_, c
    authored = [ry @ joint_rot[:, 0]]
    positions = [root]
    for j in range(1, 22):
        p = HUMANML3D_PARENTS[j]
        bone = authored[p] @ syn.NEUTRAL_BONE_ROTATIONS[j] @ syn.OFFSETS[j]
        positions.append(positions[p] + bone)
        authored.append(authored[p] @ joint_rot[:, j])
    expected = np.stack(positions, 1)
    got = forward_kinematics(syn.pose_to_local_rotations(angles, yaw), root, syn.OFFSETS,
                             HUMANML3D_PARENTS)
    np.testing.assert_allclose(got, expected, atol=1e-12)


# ---- kinematics: antonyms move the body the way their words say -------------------------------

def _motion(*names, speed="normal", frames=40):
    plan = syn.MotionPlan(tuple(syn.Segment(n, speed, frames, frames) for n in names))
    features, joints = syn.motion_from_plan(plan, np.random.default_rng(0))
    return features, joints.astype(np.float64)


def _heading(joints):
    """Unwrapped heading (radians) from the hips and shoulders: 0 = facing +Z, positive = turned
    towards +X, the person's initial left (counterclockwise seen from above)."""
    across = (joints[:, 1] - joints[:, 2]) + (joints[:, 16] - joints[:, 17])  # points left
    # forward = across × ŷ = (-a_z, 0, a_x); heading θ with forward = (sin θ, 0, cos θ) = Ry(θ) ẑ.
    forward = np.stack([-across[:, 2], across[:, 0]], -1)
    return np.unwrap(np.arctan2(forward[:, 0], forward[:, 1]))


def test_heading_helper_reads_the_canonical_start_as_facing_z():
    _, joints = _motion("walk_forward")
    assert abs(_heading(joints)[0]) < 0.05
    assert joints[-1, 0, 2] > 0.5, "walking forward moves along +Z"


@pytest.mark.parametrize("left, right", [("turn_left", "turn_right"),
                                         ("circle_counterclockwise", "circle_clockwise")])
def test_left_turns_are_positive_yaw(left, right):
    turn_left = np.diff(_heading(_motion(left)[1]))
    turn_right = np.diff(_heading(_motion(right)[1]))
    total = 2 * np.pi if left.startswith("circle") else np.pi / 2
    assert turn_left.sum() == pytest.approx(total, rel=0.1)
    assert turn_right.sum() == pytest.approx(-total, rel=0.1)
    assert (turn_left > -1e-3).all() and (turn_right < 1e-3).all()


def test_root_angular_velocity_feature_sign():
    """HumanML3D's feature 0 is the velocity of the inverse heading: positive = turning right."""
    features_left, _ = _motion("turn_left")
    features_right, _ = _motion("turn_right")
    assert features_left[:, 0].sum() < -0.3 and features_right[:, 0].sum() > 0.3


def _signed_area_from_above(xz):
    """Shoelace area of the path (x, z) seen from above (y toward the viewer): positive for a
    counterclockwise loop. (p × q)·ŷ = p_z q_x − p_x q_z."""
    x, z = xz[:, 0], xz[:, 1]
    return 0.5 * np.sum(z[:-1] * x[1:] - x[:-1] * z[1:])


def test_clockwise_and_counterclockwise_circles_loop_the_opposite_ways():
    ccw = _motion("circle_counterclockwise", frames=50)[1][:, 0, [0, 2]]
    cw = _motion("circle_clockwise", frames=50)[1][:, 0, [0, 2]]
    assert _signed_area_from_above(ccw) > 0.02
    assert _signed_area_from_above(cw) < -0.02
    # a counterclockwise circle starts by curving to the left (+X)
    assert ccw[:, 0].max() > 0.1 and cw[:, 0].min() < -0.1


@pytest.mark.parametrize("side, lifted, still", [("left", L_WRIST, R_WRIST),
                                                 ("right", R_WRIST, L_WRIST)])
def test_raising_a_hand_lifts_that_wrist_only(side, lifted, still):
    _, joints = _motion(f"raise_{side}_hand")
    rise = joints[:, :, 1].max(0) - joints[0, :, 1]
    assert rise[lifted] > 0.6 and joints[-1, lifted, 1] > joints[-1, 15, 1], "hand above head"
    assert rise[still] < 0.05


def test_raise_then_lower_moves_the_arms_up_then_down():
    _, joints = _motion("raise_both_arms", "lower_both_arms")
    wrists = joints[:, [L_WRIST, R_WRIST], 1]
    assert (wrists[40] - wrists[0] > 0.6).all()
    assert (wrists[40] - wrists[-1] > 0.6).all()


@pytest.mark.parametrize("side, lifted, still", [("left", L_FOOT, R_FOOT),
                                                 ("right", R_FOOT, L_FOOT)])
def test_kicking_lifts_that_foot_forward(side, lifted, still):
    _, joints = _motion(f"kick_{side}_leg")
    assert joints[:, lifted, 1].max() > 0.4
    assert joints[:, lifted, 2].max() - joints[0, lifted, 2] > 0.4
    assert joints[:, still, 1].max() < 0.06


@pytest.mark.parametrize("side, wrist", [("left", L_WRIST), ("right", R_WRIST)])
def test_waving_oscillates_that_hand_above_the_shoulder(side, wrist):
    _, joints = _motion(f"wave_{side}_hand")
    middle = joints[15:26, wrist]
    assert (middle[:, 1] > joints[15:26, 16 if side == "left" else 17, 1]).all()
    assert np.ptp(middle[:, 0]) > 0.08
    other = R_WRIST if side == "left" else L_WRIST
    assert np.ptp(joints[:, other, 1]) < 0.05


def test_left_vs_right_motions_are_mirror_images():
    _, left = _motion("sidestep_left")
    _, right = _motion("sidestep_right")
    assert left[-1, 0, 0] > 0.3 and right[-1, 0, 0] < -0.3, "left = +X"
    assert abs(left[-1, 0, 2]) < 0.05 and abs(right[-1, 0, 2]) < 0.05
    mirrored = right[:, syn.MIRROR_JOINTS] * np.array([-1.0, 1.0, 1.0])
    # equal up to HumanML3D's slightly asymmetric bone lengths
    assert np.abs(mirrored - left).max() < 0.05


def test_forward_vs_backward_and_up_vs_down():
    _, forward = _motion("walk_forward")
    _, backward = _motion("walk_backward")
    assert forward[-1, 0, 2] > 0.8 and backward[-1, 0, 2] < -0.5
    _, up = _motion("walk_upstairs")
    _, down = _motion("walk_downstairs")
    assert up[-1, 0, 1] - up[0, 0, 1] > 0.25
    assert down[-1, 0, 1] - down[0, 0, 1] < -0.25
    assert up[-1, 0, 2] > 0.3 and down[-1, 0, 2] > 0.3, "stairs are climbed moving forward"


def test_sit_down_then_stand_up_and_jump():
    _, joints = _motion("sit_down", "stand_up")
    root_height = joints[:, 0, 1]
    assert root_height[0] - root_height[40] > 0.3 and abs(root_height[-1] - root_height[0]) < 0.02
    _, jump = _motion("jump")
    assert jump[:, [L_FOOT, R_FOOT], 1].min(1).max() > 0.1, "both feet leave the floor"


@pytest.mark.parametrize("action", ["walk_forward", "turn_left", "raise_left_hand", "squat",
                                    "wave_right_hand"])
def test_quickly_is_faster_than_slowly(action):
    def mean_joint_speed(speed, frames):
        _, joints = _motion(action, speed=speed, frames=frames)
        return np.linalg.norm(np.diff(joints, axis=0), axis=-1).mean()

    quick = mean_joint_speed("quick", syn.ACTIONS[action].frame_range("quick")[0])
    slow = mean_joint_speed("slow", syn.ACTIONS[action].frame_range("slow")[1])
    assert quick > 1.5 * slow


def test_every_action_renders_with_constant_bones_and_grounded_feet():
    prerequisite = {"lower_left_hand": "raise_left_hand", "lower_right_hand": "raise_right_hand",
                    "lower_both_arms": "raise_both_arms", "stand_up": "sit_down"}
    for name in syn.ACTIONS:
        names = [prerequisite[name], name] if name in prerequisite else [name]
        plan = syn.MotionPlan(tuple(syn.Segment(n, "normal", 30, 30) for n in names))
        joints = syn.render_motion(plan, np.random.default_rng(0))
        assert joints.shape == (plan.num_frames + 1, 22, 3)
        lengths = bone_lengths(joints, HUMANML3D_PARENTS)
        assert np.abs(lengths - lengths[0]).max() < 1e-9, name
        floor = joints[..., 1].min(1)
        if name == "walk_downstairs":
            assert floor[-1] < -0.2 and np.all(np.diff(floor) < 1e-9), "going down"
        else:
            assert floor.min() > -1e-9, name
        if name not in ("jump", "jump_forward", "jog", "run", "walk_upstairs",
                        "walk_downstairs"):
            assert floor.max() < 1e-9, f"{name}: a foot is always on the floor"


# ---- API / CLI ---------------------------------------------------------------------------------

def test_bad_arguments_raise_value_errors_naming_the_problem(tmp_path):
    with pytest.raises(ValueError, match="num_motions"):
        syn.write_dataset(tmp_path / "x", 0)
    with pytest.raises(ValueError, match="seed"):
        syn.write_dataset(tmp_path / "x", 2, seed=-1)
    with pytest.raises(ValueError, match="workers"):
        syn.write_dataset(tmp_path / "x", 2, workers=-2)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        syn.write_dataset(tmp_path / "file", 2)
    with pytest.raises(ValueError, match="--motions"):
        syn.main(["--out", str(tmp_path / "y"), "--motions", "many", "--debug"])
    with pytest.raises(ValueError, match="--seed"):
        syn.main(["--out", str(tmp_path / "y"), "--motions", "2", "--seed", "-3", "--debug"])
    with pytest.raises(SystemExit) as info:   # without --debug: one "error:" line, status 2 (mate.cli)
        syn.main(["--out", str(tmp_path / "y"), "--motions", "many"])
    assert info.value.code == 2
    with pytest.raises(ValueError, match="unknown action"):
        syn.motion_from_plan(syn.MotionPlan((syn.Segment("moonwalk", "normal", 40, 40),)))


@pytest.mark.slow
def test_cli_writes_a_dataset(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "mate.data.synthetic", "--out", str(out), "--motions", "4",
         "--seed", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 4 motions" in result.stdout
    assert len(list((out / "new_joint_vecs").glob("*.npy"))) == 4
    assert json.loads((out / "segments.json").read_text()).keys() == {
        "000000", "000001", "000002", "000003"}
    bad = subprocess.run(
        [sys.executable, "-m", "mate.data.synthetic", "--out", str(out), "--motions", "0"],
        capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--motions must be >= 1" in bad.stderr


def test_output_loads_through_the_dataset_loader(tiny):
    dataset_module = pytest.importorskip("mate.data.dataset")
    dataset = dataset_module.MotionTextDataset(tiny, split="train", crop="start")
    train = (tiny / "train.txt").read_text().split()
    expected = sum(len((tiny / "texts" / f"{i}.txt").read_text().splitlines()) for i in train)
    assert len(dataset) == expected
    item = dataset[0]
    features = np.load(tiny / "new_joint_vecs" / f"{item['id']}.npy")
    mean, std = np.load(tiny / "Mean.npy"), np.load(tiny / "Std.npy")
    np.testing.assert_allclose(item["motion"].numpy(), (features[:item["length"]] - mean) / std,
                               rtol=1e-5, atol=1e-5)
    assert item["tokens"] and all("/" in t for t in item["tokens"])



def test_realistic_durations_vary_like_real_actions():
    """The realistic profile: a long walk beside a short kick (HumanML3D's actions run from under
    a second to many seconds), so an equal split of a multi-action motion is far from its true
    boundaries; the uniform profile keeps every action within 1-3 s."""
    rng = np.random.default_rng(0)
    spread = {}
    for durations in syn.DURATION_PROFILES:
        ratios = []
        for _ in range(1500):
            plan = syn.plan_motion(rng, durations)
            if len(plan.segments) > 1:
                frames = [s.frames for s in plan.segments]
                ratios.append(max(frames) / min(frames))
        spread[durations] = np.median(ratios)
    assert spread["uniform"] <= 3.0 and spread["realistic"] >= 2 * spread["uniform"], spread
    gait = syn.frame_range(syn.ACTIONS["walk_forward"], "slow")
    kick = syn.frame_range(syn.ACTIONS["kick_left_leg"], "normal")
    assert gait[0] >= 4 * kick[1] // 2 and kick[0] == syn.action_frame_limits("realistic")[0]
    assert syn.frame_range(syn.ACTIONS["walk_forward"], "slow", "uniform") == (44, 60)
    with pytest.raises(ValueError, match="durations"):
        syn.plan_motion(rng, "long")
    with pytest.raises(ValueError, match="durations"):
        syn.write_dataset("/nonexistent-never-written", 2, durations="long")
