"""mate.ablate: the variant list, its command lines, the metrics it tabulates, and one --quick run
of two variants sharing a stage 0."""
from __future__ import annotations

import json

import pytest
import torch

from mate import ablate, train
from mate.model.losses import LOSS_NAMES


def test_variants_cover_the_papers_tables():
    names = [v.name for v in ablate.VARIANTS]
    assert len(names) == len(set(names))
    losses = {v.name for v in ablate.VARIANTS if "losses" in v.tables}
    prior = {v.name for v in ablate.VARIANTS if "prior" in v.tables}
    assert losses == {"mate", "no_self", "no_cross", "no_align", "no_word"}          # Table 3
    assert prior == {"mate", "prior_none", "prior_binary", "prior_gaussian_in_segment"}  # Table 6


@pytest.mark.parametrize("variant", ablate.VARIANTS, ids=lambda v: v.name)
def test_train_config_of_each_variant(variant, tmp_path):
    settings = ablate._settings(ablate.build_parser().parse_args(["--quick", "--device", "cpu"]))
    config = ablate.train_config(variant, tmp_path / variant.name, tmp_path / "data", settings)
    assert isinstance(config, train.TrainConfig)
    assert config.out == tmp_path / variant.name and config.data == tmp_path / "data" and config.no_export
    assert (config.max_steps, config.epochs, config.stage0_epochs, config.batch_size) == (2, 1, 1, 8)
    expected = {
        "mate": ("gaussian", set()), "no_self": ("gaussian", {"self"}), "no_cross": ("gaussian", {"cross"}),
        "no_align": ("gaussian", {"align"}), "no_word": ("gaussian", {"self", "cross", "align"}),
        "prior_none": ("none", set()), "prior_binary": ("binary", set()),
        "prior_gaussian_in_segment": ("gaussian_in_segment", set()),
    }[variant.name]
    assert config.prior == expected[0]
    assert {n for n in LOSS_NAMES if not config.uses_loss(n)} == expected[1]
    # the variant's flags, given to `python -m mate.train`, make the same configuration
    args = train.build_parser().parse_args(variant.flags.split() if variant.overrides else [])
    assert {k: getattr(args, k) for k, _ in variant.overrides} == dict(variant.overrides)


def test_cli_parsing(capsys):
    args = ablate.build_parser().parse_args([])
    assert args.variants == "all" and not args.quick and args.encoder == "minilm" and args.eval_split == "test"
    assert [v.name for v in ablate.select_variants("all")] == list(ablate.VARIANT_NAMES)
    # canonical order whatever the order asked
    assert [v.name for v in ablate.select_variants("prior_none, mate")] == ["mate", "prior_none"]
    with pytest.raises(ValueError, match="bogus"):
        ablate.select_variants("mate,bogus")
    with pytest.raises(SystemExit):
        ablate.main(["--variants", "bogus"])
    with pytest.raises(SystemExit, match="--probes"):   # refused before any training
        ablate.main(["--probes", "pooled,bogus", "--out", "/nonexistent/never-written"])
    assert ablate._probe_config(ablate.build_parser().parse_args(["--probes", "pooled"])).probes == ("pooled",)
    assert ablate.main(["--list"]) == {}
    listed = capsys.readouterr().out
    assert all(name in listed for name in ablate.VARIANT_NAMES)
    quick = ablate._settings(ablate.build_parser().parse_args(["--quick", "--max-steps", "5"]))
    assert quick["max_steps"] == 5 and quick["synthetic_motions"] == ablate.QUICK["synthetic_motions"]
    full = ablate._settings(args)
    assert full["epochs"] is None and full["max_steps"] is None  # the preset decides


def test_summarise_metrics(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "stage,split,epoch,step,name,value,time_s\n"
        "stage1,train,0,10,self,4.0,1\nstage1,val,0,10,self,3.5,1\nstage1,train,1,20,self,3.0,2\n"
        "stage1,val,1,20,self,2.5,2\nstage1,val,1,20,align,9,2\n")
    metrics = {
        "retrieval": {"mate": {"small_batches": {"t2m": {"R@1": 40.0}, "m2t": {"R@1": 35.0}},
                               "all": {"t2m": {"R@1": 10.0}, "m2t": {"R@1": 8.0}}},
                      "baseline": {"small_batches": {"t2m": {"R@1": 1.0}, "m2t": {"R@1": 1.0}}}},
        "antonym_swap_accuracy": {
            "original": {"overall": 50.0}, "baseline": {"overall": 55.0},
            "mate": {"overall": 70.0, "per_pair": {"left/right": 80.0, "clockwise/counterclockwise": None},
                     "counts": {"total": 12}}},
        "meta": {"small_batches": {"batch_size": 32}},
    }
    row = ablate.summarise_metrics(metrics, tmp_path)
    assert row["antonym_swap_accuracy"] == 70.0 and row["antonym_swap_tests"] == 12
    assert row["antonym_swap_accuracy_pairs"]["left/right"] == 80.0
    assert row["antonym_swap_accuracy_pairs"]["clockwise/counterclockwise"] is None
    assert (row["r1_t2m_batch32"], row["r1_m2t_batch32"]) == (40.0, 35.0)
    assert (row["antonym_swap_accuracy_baseline"], row["antonym_swap_accuracy_original"]) == (55.0, 50.0)
    assert (row["final_l_self"], row["final_l_self_split"]) == (2.5, "val")
    empty = ablate.summarise_metrics({}, tmp_path / "nowhere")
    assert empty["antonym_swap_accuracy"] is None and empty["final_l_self"] is None


def test_stage0_config_leaves_out_stage1_only_settings():
    """Stage 0 trains L_rec + L_sent only: the prior, lambda1 and the word-loss switches do not
    reach its model config (hence its cache key), so every ablation variant shares one stage 0."""
    base = train.TrainConfig().resolve()
    stage0 = base.model_config(word_losses=False)
    for variant in ablate.VARIANTS:
        config = train.TrainConfig(lambda_word=1.0, **dict(variant.overrides)).resolve()
        assert config.model_config(word_losses=False) == stage0, variant.name
    binary = train.TrainConfig(prior="binary", lambda_word=1.0).resolve().model_config(word_losses=True)
    assert (binary.prior_variant, binary.lambda_word) == ("binary", 1.0)
    assert stage0.prior_variant == "gaussian" and not stage0.uses_word_losses
    # settings of both stages do reach stage 0
    assert train.TrainConfig(lambda_sent=0.5).resolve().model_config(word_losses=False).lambda_sent == 0.5
    assert train.TrainConfig(no_rec=True).resolve().model_config(word_losses=False).use_rec is False


def _stub_evaluate(run_dir, split, device, batch_size, seed):
    """Stands in for mate.evaluate.evaluate_run where that module is not importable."""
    return {"retrieval": {"mate": {"small_batches": {"t2m": {"R@1": 50.0}, "m2t": {"R@1": 25.0}}}},
            "antonym_swap_accuracy": {"mate": {"overall": 60.0, "per_pair": {"left/right": 50.0}}}}


def test_quick_run_of_two_variants_shares_stage0(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path, capsys):
    try:
        from mate.evaluate import evaluate_run as evaluate_fn
    except ImportError:
        evaluate_fn = _stub_evaluate
    argv = ["--quick", "--out", str(tmp_path / "abl"), "--data", str(tiny_synthetic_dataset), "--device", "cpu",
            "--encoder", f"hf:{tiny_hf_encoder_dir}", "--variants", "mate,prior_binary", "--eval-split", "train"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; oversubscribed threads only slow a shared machine down
    try:
        results = ablate.run_ablation(ablate.build_parser().parse_args(argv), evaluate_fn=evaluate_fn)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "abl"
    assert set(results) == {"mate", "prior_binary", "plug_and_play"}   # --protocol both, the default
    assert list(results["plug_and_play"]["encoders"]) == ["original", "baseline", "mate", "prior_binary"]
    assert (out / "ablation_plug_and_play.md").is_file()
    results = {k: v for k, v in results.items() if k != "plug_and_play"}
    assert all(r["status"] == "done" for r in results.values())
    assert not results["mate"]["stage0_shared"] and results["prior_binary"]["stage0_shared"]
    # The shared stage 0 was not retrained; stage 1 used the variant's prior.
    assert (out / "prior_binary" / "stage0" / "model.pt").stat().st_ino == (out / "mate" / "stage0" / "model.pt").stat().st_ino
    cfg1 = torch.load(out / "prior_binary" / "stage1" / "model.pt", weights_only=True)["config"]
    assert cfg1["prior_variant"] == "binary"
    for name in ("mate", "prior_binary"):
        assert (out / name / "eval" / "metrics.json").is_file()
        assert results[name]["row"]["antonym_swap_accuracy"] is not None
        assert results[name]["row"]["r1_t2m_batch32"] is not None
    assert results["mate"]["row"]["final_l_self"] is not None
    table = (out / "ablation.md").read_text()
    assert "Table 3" in table and "Table 6" in table and "prior: binary" in table and "prior: Gaussian (= MATE)" in table
    saved = json.loads((out / "ablation.json").read_text())
    assert set(saved["variants"]) == {"mate", "prior_binary"}
    capsys.readouterr()

    # Resumable: a second run skips both finished variants.
    again = ablate.run_ablation(ablate.build_parser().parse_args(argv), evaluate_fn=evaluate_fn)
    assert again["mate"]["train_seconds"] == results["mate"]["train_seconds"]
    assert capsys.readouterr().err.count("finished earlier, skipped") == 2

    # The same variants under the plug-and-play protocol: one comparison of every frozen encoder.
    argv_pnp = argv + ["--protocol", "plug-and-play", "--eval-split", "train"]
    pnp = ablate.run_ablation(ablate.build_parser().parse_args(argv_pnp), evaluate_fn=evaluate_fn)["plug_and_play"]
    assert list(pnp["encoders"]) == ["original", "baseline", "mate", "prior_binary"]
    assert pnp["config"]["seeds"] == [0, 1] and set(pnp["paired"]) == {"baseline", "mate", "prior_binary"}
    assert "plug-and-play" in (out / "ablation_plug_and_play.md").read_text()
