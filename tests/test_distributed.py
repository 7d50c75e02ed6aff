"""Two CPU processes (gloo) train exactly like one process with the same global batch.

* the sampler: the ranks' shares of every global batch, concatenated in rank order, are the
  single-process batch;
* one DDP step (2 processes, torch.multiprocessing.spawn): every loss term and every parameter's
  gradient equal the single-process ones on the global batch (L_sent, L_align over the gathered
  batch; L_cross with negatives over the global batch and cross queries answered by the rank that
  holds the motion);
* ``torchrun --nproc_per_node=2 -m mate.train`` end to end equals ``python -m mate.train``: the
  per-step losses of both stages, the final weights, segments.json; only rank 0 wrote.
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from mate import train
from mate.train.batches import Collator, mark_dynamic_dims, model_inputs
from mate.train.trainer import amp_context, loss_function
from mate.distributed import BatchGather, GlobalBatchSampler

TINY = dict(d_model=32, motion_layers=1, motion_heads=2, motion_ff=64, attention_heads=4,
            attention_dropout=0.0, motion_dropout=0.0)
GLOBAL_BATCH = 12  # 6 per rank; 8 negatives out of 11: N(i) is a proper subset


# ------------------------------------------------------------------------------- the sampler
def test_rank_shares_concatenate_to_the_single_process_batch():
    one = GlobalBatchSampler(50, 12, seed=3)
    ranks = [GlobalBatchSampler(50, 12, world_size=3, rank=r, seed=3) for r in range(3)]
    per_epoch = []
    for epoch in (0, 1):
        for s in (one, *ranks):
            s.set_epoch(epoch)
        batches = list(one)
        assert len(batches) == 50 // 12 and all(len(b) == 12 for b in batches)
        assert all(e == epoch for b in batches for e, _ in b)
        shares = [list(s) for s in ranks]
        for k, batch in enumerate(batches):
            assert sum((shares[r][k] for r in range(3)), []) == batch
        per_epoch.append([i for b in batches for _, i in b])
    assert per_epoch[0] != per_epoch[1] and len(set(per_epoch[0])) == 48  # reshuffled, no repeats
    one.set_start(2)  # a resume skips the consumed batches
    assert len(one) == 2 and list(one) == batches[2:]
    with pytest.raises(ValueError, match="multiple"):
        GlobalBatchSampler(50, 10, world_size=3)
    assert BatchGather(None)(torch.ones(2)).shape == (2,)  # one process: identity


# ------------------------------------------------------------------- one step, model level
def _setup(data, encoder_dir):
    from mate.data.dataset import MotionTextDataset
    from mate.model.mate_model import MATEConfig, MATEModel
    from mate.text.encoders import build_text_encoder

    dataset = MotionTextDataset(data, "train", crop="start")
    encoder = build_text_encoder(f"hf:{encoder_dir}")
    words = {}
    for n, r in enumerate(dataset.records):  # several words per caption, each with its own segment
        tokens = [w.strip(".,").lower() for w in r.caption.text.split()]
        words[r.caption.key] = [(w, (n + i) % 6, 2 + i, 30 + 3 * i) for i, w in enumerate(tokens[1:4])]
    items = []
    for i in range(GLOBAL_BATCH):
        item = dataset[(5 * i) % len(dataset)]
        item["sample_seed"] = 1000 + i  # the word a sample draws does not depend on its rank
        items.append(item)
    torch.manual_seed(0)
    model = MATEModel(encoder, dataset.feature_dim, num_prototypes=6, config=MATEConfig(**TINY), impl="reference")
    return model, Collator(encoder, words, seed=0), items


def _ddp_worker(rank, world, init_file, data, encoder_dir, result_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from mate import distributed as mdist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, collate, items = _setup(data, encoder_dir)
        share = GLOBAL_BATCH // world
        batch = model_inputs(collate(items[rank * share:(rank + 1) * share]), torch.device("cpu"))
        model.batch_gather = BatchGather(dist.new_group())
        ddp = DDP(model)  # keep a reference: its reducer must outlive the backward
        out = loss_function(model, ddp)(batch)
        out.total.backward()
        terms = mdist.mean_over_ranks({"total": out.total.item(), **{k: v.item() for k, v in out.terms.items()}},
                                      torch.device("cpu"))
        if rank == 0:
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            torch.save({"terms": terms, "grads": grads}, result_path)
        # Tear down while every rank is still here: a gloo group destroyed after its peer has
        # exited can wait forever in its destructor (seen as a hung test on a loaded machine).
        del out, ddp
        model.batch_gather = None
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_one_ddp_step_has_the_single_process_losses_and_gradients(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "ddp.pt"
    # fork: the workers start with everything already imported (spawn would re-import torch and
    # transformers in each, most of this test's time on a loaded 2-core machine).
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(tiny_synthetic_dataset),
                                          str(tiny_hf_encoder_dir), str(out)), nprocs=2, join=True, start_method="fork")
    ddp = torch.load(out, weights_only=True)

    model, collate, items = _setup(tiny_synthetic_dataset, tiny_hf_encoder_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = model.loss(model_inputs(collate(items), torch.device("cpu")))
        result.total.backward()
    finally:
        torch.set_num_threads(threads)
    single = {"total": result.total.item(), **{k: v.item() for k, v in result.terms.items()}}
    assert set(single) == {"total", "rec", "sent", "self", "align", "cross"}
    assert ddp["terms"].keys() == single.keys()
    for name, value in single.items():
        assert ddp["terms"][name] == pytest.approx(value, rel=1e-5), name
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert ddp["grads"].keys() == grads.keys()
    assert any(n.endswith("word_embeddings.weight") for n in grads) and "prototypes" in grads
    for name, g in grads.items():
        # relative to the tensor's largest gradient (entries whose exact gradient is 0 -- the
        # attention key bias cancels in the softmax -- carry float noise only)
        scale = g.abs().max().item()
        err = (ddp["grads"][name] - g).abs().max().item()
        assert err <= 1e-5 * scale + 1e-9, (name, err, scale)


# ---------------------------------------------------------------------- end to end, torchrun
def _train_rows(path):
    return {(r["stage"], int(r["step"]), r["name"]): float(r["value"])
            for r in csv.DictReader(open(path)) if r["split"] == "train"}


@pytest.mark.slow
def test_torchrun_two_processes_train_like_one(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    common = ["--data", str(tiny_synthetic_dataset), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--stage0-epochs", "1",
              "--epochs", "2", "--batch-size", "8", "--max-steps", "4", "--log-every", "1", "--dropout", "0",
              "--deterministic", "--no-export"]
    two, one = tmp_path / "two", tmp_path / "one"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "mate.train", *common, "--out", str(two)], env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun workers (OMP_NUM_THREADS=1); oversubscribed cores crawl
    try:
        summary = train.main([*common, "--out", str(one)])
    finally:
        torch.set_num_threads(threads)
    assert json.loads((two / "summary.json").read_text())["processes"] == 2 and summary["processes"] == 1

    rows_two, rows_one = _train_rows(two / "metrics.csv"), _train_rows(one / "metrics.csv")
    assert rows_two.keys() == rows_one.keys() and len(rows_one) == 4 * (3 + 6)  # one writer: no duplicates
    for key, value in rows_one.items():
        assert rows_two[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert json.loads((two / "segments.json").read_text()) == json.loads((one / "segments.json").read_text())
    for stage in ("stage0", "stage1"):
        a = torch.load(two / stage / "model.pt", weights_only=True)["model"]
        b = torch.load(one / stage / "model.pt", weights_only=True)["model"]
        assert a.keys() == b.keys()
        for name in b:
            # Adam turns float-noise gradients (entries whose exact gradient is 0) into steps of up
            # to lr = 2e-4: weights agree to a fraction of one step; the losses above to 1e-5.
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4, msg=f"{stage} {name}")
    assert not list((two / "checkpoints").glob("*.ckpt"))


# ------------------------------------------------------------------- --compile, --amp (CPU)
def _steps(model, batches, step_fn, amp=False, steps=2):
    optimizer = torch.optim.AdamW(model.parameter_groups(1e-3, 1e-3))
    losses = []
    for batch in batches[:steps]:
        inputs = model_inputs(batch, torch.device("cpu"))
        mark_dynamic_dims(inputs)
        with amp_context(torch.device("cpu"), amp):
            out = step_fn(inputs)
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        losses.append({"total": out.total.item(), **{k: v.item() for k, v in out.terms.items()}})
    return losses


def _tiny_model(dataset, encoder, impl):
    from mate.model.mate_model import MATEConfig, MATEModel

    torch.manual_seed(0)
    return MATEModel(encoder, dataset.feature_dim, num_prototypes=6, config=MATEConfig(**TINY), impl=impl)


@pytest.fixture()
def tiny_batches(tiny_synthetic_dataset, tiny_hf_encoder_dir):
    model, collate, items = _setup(tiny_synthetic_dataset, tiny_hf_encoder_dir)
    batches = [collate(items[:6]), collate(items[6:])]  # two different motion/caption lengths
    return model.text_encoder, batches


@pytest.mark.slow
def test_compile_fused_traces_without_graph_breaks_and_matches_eager(tiny_synthetic_dataset, tiny_batches):
    """--compile --fused: the whole training forward in one graph (the fused ops trace inline on
    CPU), compiled once for both batch shapes, same losses as eager. The test traces with the
    aot_eager backend (dynamo + AOTAutograd, the same graph as inductor) to stay small on 2 CPU
    cores; ``--compile`` defaults to inductor."""
    from torch._dynamo.utils import counters

    from mate.data.dataset import MotionTextDataset

    dataset = MotionTextDataset(tiny_synthetic_dataset, "train", crop="start")
    encoder, batches = tiny_batches
    initial = {k: v.clone() for k, v in encoder.state_dict().items()}
    eager_model = _tiny_model(dataset, encoder, "reference")
    eager = _steps(eager_model, batches, loss_function(eager_model))
    encoder.load_state_dict(initial)  # the word table trained: start again from the same one
    torch._dynamo.reset()
    counters.clear()
    model = _tiny_model(dataset, encoder, "auto")  # --fused
    compiled = _steps(model, batches, loss_function(model, compile_backend="aot_eager"))
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1  # dynamic T, L: no recompilation for the 2nd batch
    for a, b in zip(eager, compiled):
        assert a.keys() == b.keys()
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=1e-4, abs=1e-5), name
    # With attention dropout (masks from the global RNG when compiled): it traces and trains.
    model.word_attention.dropout = 0.1
    with_dropout = _steps(model, batches, loss_function(model, compile_backend="aot_eager"), steps=1)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert all(math.isfinite(v) for v in with_dropout[0].values())


def test_amp_bf16_cpu_autocast_trains_close_to_float32(tiny_synthetic_dataset, tiny_batches):
    """--amp on a CPU is bf16 CPU autocast: the encoders run in bf16, every loss in float32."""
    from mate.data.dataset import MotionTextDataset

    dataset = MotionTextDataset(tiny_synthetic_dataset, "train", crop="start")
    encoder, batches = tiny_batches
    initial = {k: v.clone() for k, v in encoder.state_dict().items()}
    fp32_model = _tiny_model(dataset, encoder, "reference")
    fp32 = _steps(fp32_model, batches, loss_function(fp32_model))
    encoder.load_state_dict(initial)
    model = _tiny_model(dataset, encoder, "reference")
    bf16 = _steps(model, batches, loss_function(model), amp=True)
    for a, b in zip(fp32, bf16):
        for name in a:
            assert isinstance(b[name], float) and b[name] == pytest.approx(a[name], rel=3e-2), name
    assert all(torch.isfinite(p).all() for p in model.parameters())
