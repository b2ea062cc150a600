"""DiT, diffusion process and Accelerate training: tiny synthetic sequence sets, CPU only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from weightgen import diffusion
from weightgen.dit import DIT_PRESETS, DiT, DiTConfig
from weightgen.dit_train import TrainConfig, collate, latest_checkpoint, load_dit, train
from weightgen.sequences import TASK_FEATURES, SequenceSet

ROOT = Path(__file__).resolve().parents[1]
D = 4


def synthetic(n=12, seed=0, lo=5, hi=40) -> SequenceSet:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g)
    T = int(lengths.sum())
    highs = (8, 8, 16, 64, 4, 64, 64, 4)  # tensor, layer, kind, row, chunk, rows, cols, ndim
    coords = torch.stack([torch.randint(int(h > 16), h, (T,), generator=g) for h in highs], 1)
    return SequenceSet(
        torch.randn(T, D, generator=g), coords, torch.rand(T, generator=g),
        torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
        torch.randint(0, 4, (n,), generator=g), torch.rand(n, TASK_FEATURES, generator=g), [{} for _ in range(n)],
    )  # fmt: skip


def tiny_model(seed=0, randomize=False) -> DiT:
    torch.manual_seed(seed)
    model = DiT(DiTConfig(latent_dim=D, **DIT_PRESETS["tiny"]))
    if randomize:  # leave adaLN-Zero so outputs depend on everything
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def batch(data: SequenceSet, indices=(0, 1, 2)):
    x, coords, depth, mask = collate([data.sequence(i) for i in indices])
    idx = list(indices)
    return x, coords, depth, mask, data.family[idx], data.task[idx]


# --------------------------------------------------------------------------- DiT
def test_shapes_and_adaln_zero_output_is_zero_at_init():
    x, coords, depth, mask, family, task = batch(synthetic())
    out = tiny_model()(x, torch.tensor([0, 500, 999]), coords, depth, mask, family, task)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))


def test_expert_presets_are_their_dense_preset_with_experts():
    # "<size>-E<n>" prices a sample as <size> (same width, depth, heads): only the feed-forward's parameters grow
    for name, preset in DIT_PRESETS.items():
        if "-E" in name:
            size, experts = name.split("-E")
            assert preset == {**DIT_PRESETS[size], "experts": int(experts)}, name
    assert {"XS-E8", "S-E8"} <= set(DIT_PRESETS)


def test_a_dits_attention_is_counted_in_what_its_forward_pass_costs():
    # A sample's price is the DiT's forward pass; torch's own counter saw none of its attention on CPU (stop 44).
    from torch.utils.flop_counter import FlopCounterMode

    from weightgen.flops import counting_flops

    x, coords, depth, mask, family, task = batch(synthetic())
    model = DiT(DiTConfig(latent_dim=D, **DIT_PRESETS["tiny"])).eval()
    t = torch.tensor([0, 500, 999])
    with torch.no_grad(), FlopCounterMode(display=False) as without_attention:
        model(x, t, coords, depth, mask, family, task)
    with torch.no_grad(), counting_flops() as counted:
        model(x, t, coords, depth, mask, family, task)
    b, n = mask.shape  # padded: every query meets every key slot
    attention = 2 * 2 * b * n * n * model.cfg.dim * model.cfg.depth
    assert counted.get_total_flops() == without_attention.get_total_flops() + attention


def test_hash_experts_cost_one_feed_forward_per_token_and_train_only_the_routed_expert():
    from weightgen.flops import counting_flops

    from weightgen.dit import HashFeedForward, hash_route

    x, coords, depth, mask, family, task = batch(synthetic())
    t = torch.tensor([0, 500, 999])
    flops, models = {}, {}
    for experts in (0, 4):
        torch.manual_seed(0)
        models[experts] = DiT(DiTConfig(latent_dim=D, **{**DIT_PRESETS["tiny"], "experts": experts})).train()
        with torch.no_grad():  # out of adaLN-Zero, so every block's feed-forward reaches the output
            for q in models[experts].parameters():
                q.add_(0.1 * torch.randn_like(q))
        with counting_flops() as counter:
            out = models[experts](x, t, coords, depth, mask, family, task)
        flops[experts] = counter.get_total_flops()
    assert flops[4] == flops[0]  # four experts' parameters at one feed-forward's FLOPs per token
    dense, moe = (sum(q.numel() for q in models[e].parameters()) for e in (0, 4))
    ffn = sum(q.numel() for q in models[0].blocks[0].mlp.parameters()) * len(models[0].blocks)
    assert moe - dense == 3 * ffn
    route = hash_route(coords, 4)
    assert torch.equal(route, hash_route(coords.clone(), 4)) and set(route.unique().tolist()) <= {0, 1, 2, 3}
    # a token goes through its expert alone: the gradient of one token's output reaches that expert only
    layer = HashFeedForward(8, 16, 4)
    h, one = torch.randn(1, 5, 8), torch.tensor([[0, 1, 2, 3, 1]])
    layer(h, one)[0, 2].sum().backward()
    assert layer.w1.grad[2].abs().sum() > 0 and layer.w1.grad[[0, 1, 3]].abs().sum() == 0
    # the sorted forward is each expert applied to its own tokens, to the bit, values and gradients alike
    h, route = torch.randn(3, 40, 8, requires_grad=True), torch.randint(0, 4, (3, 40))
    route[:, :3] = 3  # expert 0 may go unused in a batch; here expert 3 takes many
    route[route == 0] = 1
    expected = torch.zeros(3, 40, 8)
    for e in range(4):
        chosen = route == e
        expected[chosen] = F.gelu(h[chosen] @ layer.w1[e] + layer.b1[e], approximate="tanh") @ layer.w2[e] + layer.b2[e]
    got = layer(h, route)
    assert torch.equal(got, expected)
    assert torch.equal(torch.autograd.grad(got.sum(), h)[0], torch.autograd.grad(expected.sum(), h)[0])
    assert DiTConfig(latent_dim=D).experts == 0  # a config written before experts existed loads as dense


def test_padding_does_not_change_real_tokens():
    model = tiny_model(randomize=True)
    x, coords, depth, mask, family, task = batch(synthetic())
    assert not mask.all()  # there is padding to perturb
    t = torch.tensor([10, 400, 900])
    out = model(x, t, coords, depth, mask, family, task)
    pad = ~mask
    x2, coords2, depth2 = x.clone(), coords.clone(), depth.clone()
    x2[pad] = 100 * torch.randn(int(pad.sum()), D)
    coords2[pad] = 3
    depth2[pad] = 0.7
    out2 = model(x2, t, coords2, depth2, mask, family, task)
    assert torch.allclose(out[mask], out2[mask], atol=1e-6)
    assert torch.equal(out2[pad], torch.zeros_like(out2[pad]))
    # and a real token's output does depend on another real token
    x3 = x.clone()
    x3[0, 0] += 1
    assert not torch.allclose(model(x3, t, coords, depth, mask, family, task)[0, 1], out[0, 1])


def test_cfg_drop_task_uses_null_embedding():
    model = tiny_model(randomize=True)
    x, coords, depth, mask, family, task = batch(synthetic())
    t = torch.tensor([100, 100, 100])
    cond = model(x, t, coords, depth, mask, family, task)
    uncond = model(x, t, coords, depth, mask, family, None)
    dropped = model(x, t, coords, depth, mask, family, task, drop_task=torch.ones(3, dtype=torch.bool))
    mixed = model(x, t, coords, depth, mask, family, task, drop_task=torch.tensor([True, False, True]))
    assert torch.equal(dropped, uncond)
    assert not torch.allclose(cond, uncond)
    assert torch.equal(mixed[1], cond[1]) and torch.equal(mixed[0], uncond[0])
    c = model.condition(t, family, None)
    expected = model.t_embedder(t) + model.family_embedder(family) + model.null_task
    assert torch.allclose(c, expected)


# --------------------------------------------------------------------------- diffusion
def test_schedule_and_q_sample_statistics():
    a = diffusion.ALPHAS_CUMPROD
    assert len(a) == diffusion.NUM_TRAIN_STEPS and (a[1:] < a[:-1]).all()
    assert a[0] > 0.9999 and a[-1] < 1e-4
    g = torch.Generator().manual_seed(0)
    x0 = 3 + 0.5 * torch.randn(4, 5000, 2, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    x_first = diffusion.q_sample(x0, torch.zeros(4, dtype=torch.long), noise)
    x_last = diffusion.q_sample(x0, torch.full((4,), 999), noise)
    assert (x_first - x0).abs().max() < 0.05
    assert abs(x_last.mean()) < 0.05 and abs(x_last.std() - 1) < 0.05
    assert (x_last - noise).abs().max() < 0.05


def test_loss_decreases_when_overfitting_two_sequences():
    data = synthetic(n=2, lo=10, hi=16, seed=3)
    model = tiny_model().train()
    x0, coords, depth, mask, family, task = batch(data, (0, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    fn = lambda x, t, mask: model(x, t, coords, depth, mask, family, task, drop_task=torch.zeros(2, dtype=torch.bool))  # noqa: E731
    g = torch.Generator().manual_seed(0)
    t_eval = torch.tensor([[100, 300], [500, 700], [800, 950]])
    noise_eval = torch.randn(3, *x0.shape, generator=g)

    def evaluate():
        with torch.no_grad():
            return sum(float(diffusion.training_loss(fn, x0, t, n, mask)) for t, n in zip(t_eval, noise_eval)) / 3

    before = evaluate()
    for _ in range(200):
        t = torch.randint(0, 1000, (2,), generator=g)
        loss = diffusion.training_loss(fn, x0, t, torch.randn(x0.shape, generator=g), mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate()
    assert after < 0.5 * before, (before, after)


def test_ddim_sampler_shape_mask_determinism_and_guidance():
    model = tiny_model(randomize=True)
    _, coords, depth, mask, family, task = batch(synthetic())
    calls = []

    def fn(x, t, mask, drop_task=None, **cond):
        calls.append(bool(drop_task.all()))
        return model(x, t, mask=mask, drop_task=drop_task, **cond)

    cond = dict(coords=coords, depth=depth, family=family, task=task)
    shape = (*mask.shape, D)
    run = lambda seed, **kw: diffusion.sample(fn, shape, mask, cond, steps=10, generator=torch.Generator().manual_seed(seed), **kw)  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert a.shape == shape and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(a[~mask], torch.zeros_like(a[~mask])) and a[mask].abs().sum() > 0
    assert calls == [False] * 30
    calls.clear()
    guided = run(0, guidance_scale=3.0)
    assert calls == [False, True] * 10 and not torch.allclose(guided, a)


# --------------------------------------------------------------------------- Accelerate training
def _weights(folder) -> dict[str, torch.Tensor]:
    return load_dit(folder).state_dict()


def test_resume_from_checkpoint_is_exact(tmp_path):
    data = synthetic()
    cfg = dict(steps=12, batch_size=4, checkpoint_every=4, log_every=4, max_len=24, lr=1e-3, ema=0.9)
    model_cfg = DiTConfig(latent_dim=D, **DIT_PRESETS["tiny"])
    full = train(data, tmp_path / "full", TrainConfig(**cfg), model_cfg)
    stopped = train(data, tmp_path / "parts", TrainConfig(**cfg, stop_at=8), model_cfg)
    assert len(stopped.losses) == 8 and not (tmp_path / "parts" / "model.safetensors").exists()
    (tmp_path / "parts" / "checkpoints" / ".tmp-step-000012").mkdir()  # a half-written checkpoint is ignored
    assert latest_checkpoint(tmp_path / "parts").name == "step-000008"
    resumed = train(data, tmp_path / "parts", TrainConfig(**cfg, resume=True), model_cfg)
    assert resumed.losses == full.losses and len(full.losses) == 12
    assert resumed.weights_sha256 == full.weights_sha256
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "parts")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "parts" / "losses.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,tokens_per_s") and [int(l.split(",")[0]) for l in lines[1:]] == [4, 8, 12]
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["dit"]["dim"] == 32 and config["train"]["steps"] == 12 and config["weights"] == "ema"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one(tmp_path):
    data = synthetic()
    data.save(tmp_path / "seqs.safetensors")
    args = ["--data", str(tmp_path / "seqs.safetensors"), "--preset", "tiny", "--steps", "10", "--batch-size", "4",
            "--max-len", "24", "--lr", "1e-3", "--log-every", "5"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(_free_port())]  # fmt: skip
    proc = subprocess.run([*torchrun, "-m", "weightgen.dit_train", *args, "--out", str(tmp_path / "two")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["num_processes"] == 2 and run["distributed_type"] == "MULTI_CPU"
    hashes = {json.loads((tmp_path / "two" / f"rank-{r}.json").read_text())["weights_sha256"] for r in (0, 1)}
    assert len(hashes) == 1

    one = train(data, tmp_path / "one", TrainConfig(steps=10, batch_size=4, max_len=24, lr=1e-3, log_every=5),
                DiTConfig(latent_dim=D, **DIT_PRESETS["tiny"]))  # fmt: skip
    assert one.num_processes == 1
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 1e-4, diff


def test_sigkilled_training_resumes_to_the_same_weights(tmp_path):
    """A real kill (SIGKILL mid-run, not a polite stop) and --resume give the uninterrupted run's weights."""
    import signal
    import time

    data = synthetic()
    data.save(tmp_path / "seqs.safetensors")
    args = ["--data", str(tmp_path / "seqs.safetensors"), "--preset", "tiny", "--steps", "60", "--batch-size", "4",
            "--max-len", "24", "--lr", "1e-3", "--log-every", "10", "--checkpoint-every", "5"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "weightgen.dit_train", *args]
    killed = subprocess.Popen([*run, "--out", str(tmp_path / "killed")], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "killed" / "checkpoints" / "step-000010"
    deadline = time.monotonic() + 120
    while not first.is_dir():
        assert killed.poll() is None and time.monotonic() < deadline, "training ended before a checkpoint appeared"
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # it really died part-way
    resumed = subprocess.run([*run, "--out", str(tmp_path / "killed"), "--resume"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    whole = subprocess.run([*run, "--out", str(tmp_path / "whole")], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [(tmp_path / d / "losses.csv").read_text().splitlines() for d in ("whole", "killed")]
    assert [line.split(",")[:2] for line in losses[0]] == [line.split(",")[:2] for line in losses[1]]


def test_resume_checkpoints_take_the_umasks_modes(tmp_path):
    """Accelerate's save_state writes its model.safetensors owner-only: a teammate or a worker running as another
    user could not resume from it."""
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    if 0o666 & ~umask == 0o600:
        pytest.skip("this umask (077) asks for owner-only modes: nothing to tell apart")
    cfg = TrainConfig(steps=2, batch_size=4, checkpoint_every=2, log_every=2, max_len=24, lr=1e-3)
    train(synthetic(), tmp_path, cfg, DiTConfig(latent_dim=D, **DIT_PRESETS["tiny"]))
    written = list(latest_checkpoint(tmp_path).rglob("*"))
    assert any(p.name == "model.safetensors" for p in written)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written if p.is_file()}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)


def test_a_fresh_run_overwrites_old_checkpoints(tmp_path):
    data = synthetic()
    cfg = TrainConfig(steps=4, batch_size=4, checkpoint_every=2, log_every=2, max_len=24, lr=1e-3)
    model_cfg = DiTConfig(latent_dim=D, **DIT_PRESETS["tiny"])
    first = train(data, tmp_path, cfg, model_cfg)
    again = train(data, tmp_path, TrainConfig(**{**cfg.__dict__, "seed": 1}), model_cfg)  # not resumed
    assert again.losses != first.losses and latest_checkpoint(tmp_path).name == "step-000004"
    state = json.loads((latest_checkpoint(tmp_path) / "trainer_state.json").read_text())
    assert state["losses"] == again.losses
