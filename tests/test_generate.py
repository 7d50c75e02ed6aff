"""mate.generate: the diffusion's known answers, the denoiser's guidance, the caption cache, a tiny
train -> resume -> load -> sample, the sampling command, and bad inputs. Tiny shapes throughout."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mate.generate.config import GenConfig, preset
from mate.generate.diffusion import GaussianDiffusion, cosine_alpha_bar, ddim_timesteps, masked_mse
from mate.generate.model import DenoiserConfig, MotionDenoiser, TextCondition

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread for these tiny shapes (much faster on a CPU shared with other jobs);
    the previous setting is restored for the rest of the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(width=32, layers=1, heads=2, ff=32, diffusion_steps=50, sample_steps=4, batch_size=8,
            max_frames=64, dropout=0.0)


# ------------------------------------------------------------------------------------ diffusion
def test_cosine_schedule_matches_the_closed_form():
    diffusion = GaussianDiffusion(1000)
    t = torch.arange(1000, dtype=torch.float64)
    closed = cosine_alpha_bar(t + 1, 1000)  # abar after step t
    clipped = diffusion.betas >= 0.999
    assert clipped.sum() <= 2  # the cap touches only the last step(s)
    free = ~torch.cumsum(clipped.long(), 0).bool()
    assert torch.allclose(diffusion.alpha_bar[free], closed[free], rtol=1e-10, atol=1e-12)
    # f(t) = cos^2(((t/T + s)/(1+s)) pi/2) / f(0) at a few points, by hand
    s = 0.008
    for step in (0, 250, 500, 900):
        expected = math.cos(((step + 1) / 1000 + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
        assert diffusion.alpha_bar[step].item() == pytest.approx(expected, rel=1e-10)
    assert diffusion.alpha_bar[0] > 0.9999 and diffusion.alpha_bar[-1] < 1e-6
    assert bool((diffusion.alpha_bar[1:] < diffusion.alpha_bar[:-1]).all())


def test_q_sample_statistics():
    diffusion = GaussianDiffusion(100)
    torch.manual_seed(0)
    x0 = torch.full((20000, 1, 1), 2.0)
    t = torch.full((20000,), 40, dtype=torch.int64)
    x_t = diffusion.q_sample(x0, t)
    abar = float(diffusion.alpha_bar[40])
    assert x_t.mean().item() == pytest.approx(2.0 * math.sqrt(abar), abs=0.03)
    assert x_t.var().item() == pytest.approx(1 - abar, rel=0.05)
    noise = torch.randn(3, 5, 2)
    exact = diffusion.q_sample(torch.ones(3, 5, 2), torch.tensor([0, 10, 99]), noise)
    ab = diffusion.alpha_bar[[0, 10, 99]].float().view(3, 1, 1)
    torch.testing.assert_close(exact, ab.sqrt() + (1 - ab).sqrt() * noise)


def test_ddim_with_a_perfect_oracle_recovers_x0():
    diffusion = GaussianDiffusion(1000)
    x0 = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(1))
    for steps in (1, 5, 50):
        out = diffusion.ddim_sample(lambda x_t, t: x0, x0.shape, steps=steps, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)
    # eta = 1 adds noise along the way but the last step still returns the oracle's x0
    out = diffusion.ddim_sample(lambda x_t, t: x0, x0.shape, steps=10, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


def test_ddim_timesteps_and_their_errors():
    steps = ddim_timesteps(1000, 50)
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 50 and bool((steps[1:] < steps[:-1]).all())
    for bad in (0, 1001, 2.5):
        with pytest.raises(ValueError, match="sampling steps"):
            ddim_timesteps(1000, bad)
    with pytest.raises(ValueError, match="timesteps must lie"):
        GaussianDiffusion(10).q_sample(torch.zeros(1, 2, 2), torch.tensor([10]))


def test_masked_loss_ignores_padded_frames():
    target = torch.zeros(2, 4, 3)
    prediction = torch.zeros(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    prediction[0, 2:] = 1e6  # padding: must not count
    prediction[1, 0] = 2.0   # one valid frame off by 2 on each of 3 features
    assert masked_mse(prediction, target, mask).item() == pytest.approx(3 * 4.0 / (6 * 3))


# ------------------------------------------------------------------------------------- denoiser
def _denoiser(cross: bool = False) -> MotionDenoiser:
    torch.manual_seed(0)
    config = DenoiserConfig(feature_dim=5, text_dim=6, token_dim=4 if cross else 0, max_frames=12, width=16,
                            layers=1, heads=2, ff=16, dropout=0.0, cross_attention=cross)
    model = MotionDenoiser(config).eval()
    with torch.no_grad():  # make the null embeddings differ from a real condition
        model.null_pooled.normal_()
    return model


def _condition(cross: bool, B: int = 3) -> TextCondition:
    g = torch.Generator().manual_seed(5)
    if not cross:
        return TextCondition(torch.randn(B, 6, generator=g))
    mask = torch.tensor([[True, True, False], [True, True, True], [True, False, False]])[:B]
    return TextCondition(torch.randn(B, 6, generator=g), torch.randn(B, 3, 4, generator=g), mask)


@pytest.mark.parametrize("cross", [False, True])
def test_guidance_scales_one_and_zero(cross):
    model = _denoiser(cross)
    x = torch.randn(3, 9, 5)
    t = torch.tensor([0, 5, 40])
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[0, 6:] = False
    cond = _condition(cross)
    with torch.no_grad():
        conditional = model(x, t, mask, cond)
        unconditional = model(x, t, mask, cond, torch.ones(3, dtype=torch.bool))
        torch.testing.assert_close(model.guided(x, t, mask, cond, 1.0), conditional)
        torch.testing.assert_close(model.guided(x, t, mask, cond, 0.0), unconditional, rtol=1e-5, atol=1e-5)
        s = 2.5
        torch.testing.assert_close(model.guided(x, t, mask, cond, s),
                                   unconditional + s * (conditional - unconditional), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(conditional, unconditional)
    assert torch.all(conditional[0, 6:] == 0)


def test_padded_frames_do_not_change_valid_ones():
    model = _denoiser()
    x = torch.randn(1, 9, 5)
    mask = torch.ones(1, 9, dtype=torch.bool)
    mask[0, 6:] = False
    cond = _condition(False, 1)
    t = torch.tensor([3])
    with torch.no_grad():
        a = model(x, t, mask, cond)
        x2 = x.clone()
        x2[0, 6:] = 100.0
        b = model(x2, t, mask, cond)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_trained_denoiser_follows_its_condition():
    """Two conditions, two target motions (+1 and -1 everywhere): after a short training, guided
    DDIM samples land on the target of their condition; with guidance 0 the condition is ignored."""
    torch.manual_seed(0)
    config = DenoiserConfig(feature_dim=4, text_dim=3, max_frames=8, width=32, layers=1, heads=2, ff=64, dropout=0.0)
    model = MotionDenoiser(config)
    diffusion = GaussianDiffusion(100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    conditions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([1.0, -1.0]).view(2, 1, 1).expand(2, 8, 4)
    mask = torch.ones(32, 8, dtype=torch.bool)
    for _ in range(80):
        which = torch.randint(0, 2, (32,))
        drop = torch.rand(32) < 0.1
        cond = TextCondition(conditions[which])
        loss = diffusion.training_loss(lambda x_t, t: model(x_t, t, mask, cond, drop), targets[which], mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    noise = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0))

    def sample(order, scale):
        cond = TextCondition(conditions[order])
        return diffusion.ddim_sample(lambda x_t, t: model.guided(x_t, t, mask[:2], cond, scale), (2, 8, 4),
                                     steps=10, noise=noise).mean(dim=(1, 2))

    guided, swapped = sample([0, 1], 2.0), sample([1, 0], 2.0)
    assert guided[0] > 0.7 and guided[1] < -0.7 and swapped[0] < -0.7 and swapped[1] > 0.7
    torch.testing.assert_close(sample([0, 1], 0.0), sample([1, 0], 0.0))  # guidance 0 ignores the text


def test_denoiser_bad_inputs():
    model = _denoiser()
    cond = _condition(False, 1)
    mask = torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="longer than the model's maximum"):
        model(torch.zeros(1, 13, 5), torch.tensor([0]), torch.ones(1, 13, dtype=torch.bool), cond)
    with pytest.raises(ValueError, match=r"x_t must be \[B, T, 5\]"):
        model(torch.zeros(1, 4, 7), torch.tensor([0]), mask, cond)
    with pytest.raises(ValueError, match="pooled text feature"):
        model(torch.zeros(1, 4, 5), torch.tensor([0]), mask, TextCondition(torch.zeros(1, 9)))
    with pytest.raises(ValueError, match="divisible"):
        DenoiserConfig(feature_dim=5, text_dim=6, width=10, heads=3)
    with pytest.raises(ValueError, match="cross_attention needs token_dim"):
        DenoiserConfig(feature_dim=5, text_dim=6, cross_attention=True)


def test_presets():
    mdm = preset("mdm")
    assert (mdm.layers, mdm.width, mdm.heads, mdm.ff, mdm.diffusion_steps, mdm.sample_steps) == (8, 512, 4, 1024, 1000, 50)
    assert mdm.cond_drop_prob == 0.1 and mdm.guidance == 2.5
    sizes = dict(width=mdm.width, layers=mdm.layers, heads=mdm.heads, ff=mdm.ff, dropout=mdm.dropout)
    model = MotionDenoiser(DenoiserConfig(feature_dim=263, text_dim=512, **sizes)).eval()
    assert 17.5e6 < model.parameter_count() < 18.5e6  # docs/generation.md's 17.9 M with CLIP
    with torch.no_grad():
        out = model(torch.zeros(1, 8, 263), torch.tensor([999]), torch.ones(1, 8, dtype=torch.bool),
                    TextCondition(torch.zeros(1, 512)))
    assert out.shape == (1, 8, 263)
    with pytest.raises(ValueError, match="unknown generator preset"):
        preset("huge")
    with pytest.raises(ValueError, match="sample_steps"):
        GenConfig(sample_steps=10, diffusion_steps=5)


# ------------------------------------------------------------------------------------ text side
def test_caption_cache_is_keyed_by_encoder_and_captions(tiny_hf_encoder_dir, tmp_path):
    from mate.generate.text import build_encoder, encode_captions_cached, encoder_fingerprint

    encoder = build_encoder(f"hf:{tiny_hf_encoder_dir}")
    key = encoder_fingerprint(encoder)
    assert key == encoder_fingerprint(build_encoder(f"hf:{tiny_hf_encoder_dir}"))
    captions = ["a person walks forward", "someone jumps"]
    first = encode_captions_cached(encoder, captions, tmp_path, tokens=True)
    assert first.pooled.shape == (2, encoder.output_dim) and first.pooled.dtype == torch.float32
    assert first.token_values.dtype == torch.float16 and first.token_offsets.tolist()[0] == 0
    files = list(tmp_path.glob("text-*.pt"))
    assert len(files) == 1
    again = encode_captions_cached(encoder, captions, tmp_path, tokens=True)
    torch.testing.assert_close(again.pooled, first.pooled)
    encode_captions_cached(encoder, captions[:1], tmp_path)
    with torch.no_grad():
        encoder.word_embeddings.weight[5] += 1.0
    assert encoder_fingerprint(encoder) != key
    encode_captions_cached(encoder, captions, tmp_path, tokens=True)
    assert len(list(tmp_path.glob("text-*.pt"))) == 3
    pooled, tokens, mask = first.batch([1, 0])
    assert tokens.shape[:2] == mask.shape and mask[:, 0].all()


def test_encoder_sources_and_prompts(tiny_hf_encoder_dir, tmp_path):
    from mate.generate.text import build_encoder, check_prompts, describe_source

    assert describe_source("minilm") == ("spec", "minilm")
    with pytest.raises(ValueError, match="neither a MATE run directory"):
        describe_source(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        describe_source(tmp_path / "missing_run")
    encoder = build_encoder(f"hf:{tiny_hf_encoder_dir}")
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        check_prompts(encoder, ["  "])
    with pytest.raises(ValueError, match="characters long"):
        check_prompts(encoder, ["walk " * 300])
    with pytest.raises(ValueError, match="too long for the text encoder"):
        check_prompts(encoder, ["a person walks forward " * 40])
    assert check_prompts(encoder, ["a person walks forward"]) == ["a person walks forward"]


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained_run(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path_factory):
    from mate.generate.train import train_generator

    out = tmp_path_factory.mktemp("gen") / "run"
    config = GenConfig(**TINY, epochs=1)
    summary = train_generator(tiny_synthetic_dataset, f"hf:{tiny_hf_encoder_dir}", out, config, device="cpu",
                              progress=False)
    return out, summary, config


def test_train_writes_a_rebuildable_run(trained_run):
    from mate.generate.rundir import read_gen_manifest

    out, summary, config = trained_run
    manifest = read_gen_manifest(out)
    assert GenConfig.from_dict(manifest["config"]) == config
    assert DenoiserConfig.from_dict(manifest["denoiser"]).feature_dim == manifest["data"]["feature_dim"]
    per_epoch = math.ceil(summary["train_clips"] / config.batch_size)
    assert summary["steps"] == per_epoch and summary["seconds_training"] > 0 and summary["memory"]["peak_rss_bytes"]
    assert json.loads((out / "summary.json").read_text())["steps"] == per_epoch
    assert (out / "model.pt.done").is_file() and list((out / "checkpoints").glob("gen-step*.ckpt"))
    assert list((out / "text_cache").glob("text-*.pt"))


def test_resume_continues_from_the_checkpoint(trained_run, tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    import shutil

    from mate.checkpoint import latest_valid_checkpoint
    from mate.generate.train import train_generator

    out, _, config = trained_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    with pytest.raises(FileExistsError, match="--resume"):
        train_generator(tiny_synthetic_dataset, f"hf:{tiny_hf_encoder_dir}", copy, config, device="cpu", progress=False)
    with pytest.raises(ValueError, match="other settings.*lr"):
        train_generator(tiny_synthetic_dataset, f"hf:{tiny_hf_encoder_dir}", copy, config.with_overrides(lr=0.5),
                        resume=True, device="cpu", progress=False)
    _, before = latest_valid_checkpoint(copy / "checkpoints", "gen")
    summary = train_generator(tiny_synthetic_dataset, f"hf:{tiny_hf_encoder_dir}", copy,
                              config.with_overrides(epochs=3), resume=True, device="cpu", progress=False, max_steps=100)
    # epoch 1 comes from the checkpoint (its loss kept), epochs 2 and 3 are trained now
    assert summary["epochs_done"] == 3 and summary["steps"] == 3 * before["step"]
    assert summary["epoch_losses"][0] == before["losses"][0]
    _, payload = latest_valid_checkpoint(copy / "checkpoints", "gen")
    assert payload["step"] == 3 * before["step"] and payload["epoch"] == 3
    assert not torch.equal(payload["model"]["output_proj.weight"], before["model"]["output_proj.weight"])
    # max_steps stops early; a resume at the end trains nothing more
    again = train_generator(tiny_synthetic_dataset, f"hf:{tiny_hf_encoder_dir}", copy,
                            config.with_overrides(epochs=3), resume=True, device="cpu", progress=False)
    assert again["steps"] == summary["steps"]


def test_a_resumed_run_repeats_the_uninterrupted_one(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    from mate.generate.train import train_generator

    encoder = f"hf:{tiny_hf_encoder_dir}"
    config = GenConfig(**{**TINY, "dropout": 0.1}, epochs=2)
    train_generator(tiny_synthetic_dataset, encoder, tmp_path / "whole", config, device="cpu", progress=False)
    train_generator(tiny_synthetic_dataset, encoder, tmp_path / "split", config.with_overrides(epochs=1),
                    device="cpu", progress=False)
    train_generator(tiny_synthetic_dataset, encoder, tmp_path / "split", config, resume=True, device="cpu",
                    progress=False)
    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["model"]
    split = torch.load(tmp_path / "split" / "model.pt", weights_only=True)["model"]
    assert whole.keys() == split.keys()
    for name in whole:
        assert torch.equal(whole[name], split[name]), name


def test_load_and_sample(trained_run, tiny_hf_encoder_dir, tmp_path):
    import mate.generate
    from mate.generate.rundir import GeneratorRunError

    out, _, _ = trained_run
    gen = mate.generate.load(out)
    motions = gen.sample(["a person walks forward", "someone jumps"], [10, 7], seed=0, steps=3)
    assert motions.shape == (2, 10, gen.feature_dim) and motions.dtype == torch.float32
    assert torch.all(motions[1, 7:] == 0) and torch.isfinite(motions).all()
    again = gen.sample(["a person walks forward", "someone jumps"], [10, 7], seed=0, steps=3)
    torch.testing.assert_close(motions, again)
    batched = gen.sample(["a person walks forward", "someone jumps"], [10, 10], seed=[4, 9], steps=3)
    alone = gen.sample(["someone jumps"], [10], seed=9, steps=3)
    torch.testing.assert_close(batched[1], alone[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="one integer per prompt"):
        gen.sample(["walk", "run"], [10, 10], seed=[1])
    raw = gen.denormalize(motions[0].numpy())
    np.testing.assert_allclose(raw, motions[0].numpy() * gen.std + gen.mean, rtol=1e-6)
    with pytest.raises(ValueError, match="beyond this model's maximum"):
        gen.sample(["walk"], [65])
    with pytest.raises(ValueError, match="one length"):
        gen.sample(["walk", "run"], [10])
    with pytest.raises(ValueError, match="empty"):
        gen.sample([""], [10])
    with pytest.raises(ValueError, match="positive number of seconds"):
        gen.frames_for_seconds(0)
    with pytest.raises(GeneratorRunError, match="not a generator run"):
        mate.generate.load(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format": "mate-run"}))
    with pytest.raises(GeneratorRunError, match="MATE training run"):
        mate.generate.load(tmp_path)


def test_load_refuses_another_encoder(trained_run, tiny_hf_encoder_dir, tmp_path):
    import shutil

    import mate.generate

    out, _, _ = trained_run
    other = tmp_path / "enc"
    shutil.copytree(tiny_hf_encoder_dir, other)
    import transformers

    model = transformers.DistilBertModel.from_pretrained(other)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[7] += 1.0
    model.save_pretrained(other)
    with pytest.raises(ValueError, match="does not match"):
        mate.generate.load(out, encoder=f"hf:{other}")


def test_sampling_command_writes_npy_and_gif(trained_run, tmp_path, capsys):
    from mate.generate.__main__ import main

    out, _, _ = trained_run
    dest = tmp_path / "samples"
    assert main(["--model", str(out), "--text", "a person walks forward", "--seconds", "0.5", "--num", "2",
                 "--steps", "2", "--out", str(dest), "--no-mp4", "--threads", "1"]) == 0
    meta = json.loads((dest / "samples.json").read_text())
    assert meta["frames"] == 10 and len(meta["samples"]) == 2
    features = np.load(dest / "sample_00_features.npy")
    joints = np.load(dest / "sample_01_joints.npy")
    assert features.shape == (10, 263) and joints.shape == (10, 22, 3)
    gif = dest / "sample_00.gif"
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    for argv, message in ((["--seconds", "0"], "--seconds must be positive"),
                          (["--seconds", "60"], "at most 64 frames"),
                          (["--text", ""], "empty")):
        base = {"--model": str(out), "--text": "walk", "--seconds": "1", "--out": str(dest)}
        base.update(dict(zip(argv[::2], argv[1::2])))
        with pytest.raises(SystemExit) as exc:
            main([x for kv in base.items() for x in kv])
        assert message in str(exc.value) and str(exc.value).startswith("error:")
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(tmp_path), "--text", "walk", "--out", str(dest)])
    assert "not a generator run" in str(exc.value)


def test_training_command_errors(tmp_path):
    from mate.generate.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--encoder", "minilm", "--out", str(tmp_path / "x"), "--no-progress"])
    assert "--data DIR is required" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(tmp_path / "missing"), "--encoder", "minilm", "--out", str(tmp_path / "x")])
    assert "not a directory" in str(exc.value)


def test_cross_attention_with_amp_trains_and_samples(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    import mate.generate
    from mate.generate.train import train_generator

    config = GenConfig(**TINY, epochs=1, cross_attention=True, amp=True)
    summary = train_generator(tiny_synthetic_dataset, f"hf:{tiny_hf_encoder_dir}", tmp_path / "run", config,
                              device="cpu", progress=False, max_steps=1)
    assert summary["steps"] == 1 and summary["amp"]
    gen = mate.generate.load(tmp_path / "run")
    assert gen.denoiser.config.cross_attention and gen.denoiser.config.token_dim > 0
    motions = gen.sample(["a person walks forward"], [8], seed=1, steps=2)
    assert motions.shape == (1, 8, gen.feature_dim) and torch.isfinite(motions).all()


def test_compile_failure_falls_back_to_eager(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path, monkeypatch):
    from mate.generate.train import train_generator

    def broken(model, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    summary = train_generator(tiny_synthetic_dataset, f"hf:{tiny_hf_encoder_dir}", tmp_path / "run",
                              GenConfig(**TINY, epochs=1, compile=True), device="cpu", progress=False, max_steps=1)
    assert summary["steps"] == 1 and summary["compiled"] is False


def test_training_command_end_to_end(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path, capsys):
    from mate.generate.train import main

    out = tmp_path / "run"
    assert main(["--data", str(tiny_synthetic_dataset), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--out", str(out),
                 "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--no-progress", "--device", "cpu", "--threads", "1"]) == 0
    assert "trained 1 steps" in capsys.readouterr().out
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["preset"] == "cpu-small" and manifest["config"]["batch_size"] == 4
    assert manifest["encoder"]["kind"] == "spec" and manifest["argv"][0] == "--data"
    with pytest.raises(SystemExit) as exc:  # a second run into the same folder needs --resume
        main(["--data", str(tiny_synthetic_dataset), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--out", str(out)])
    assert "--resume" in str(exc.value)


def test_encoder_from_an_export_folder_and_a_run_folder(tiny_hf_encoder_dir, tmp_path):
    from mate.generate.text import build_encoder, describe_source, encoder_fingerprint

    encoder = build_encoder(f"hf:{tiny_hf_encoder_dir}")
    encoder.export(tmp_path / "export")
    assert describe_source(tmp_path / "export") == ("export", str((tmp_path / "export").resolve()))
    assert encoder_fingerprint(build_encoder(tmp_path / "export")) == encoder_fingerprint(encoder)
    (tmp_path / "mate_run").mkdir()
    (tmp_path / "mate_run" / "run.json").write_text("{}")
    assert describe_source(tmp_path / "mate_run")[0] == "mate-run"
