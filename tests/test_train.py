"""Training: the loss falls on real poses, runs resume from checkpoints, and two-process DDP (gloo) works."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gfpose_core.prior.masking import MaskingConfig, hierarchical_mask
from gfpose_core.prior.score_net import ScoreNet, ScoreNetConfig
from gfpose_core.prior.sde import SubVPSDE
from gfpose_core.prior.train import TrainConfig, Trainer


def _poses():
    from gfpose_core.data import DATA_DIR, load_take
    clip = DATA_DIR / "cmu" / "bvh" / "01_01.bvh.gz"
    if not clip.exists():
        pytest.skip(f"{clip} not present")
    j = load_take(clip).joints[1::8]
    return j[:250], j[250:300]


def _small(steps, **kw):
    cfg = TrainConfig(steps=steps, batch=64, warmup=10, val_every=steps, ckpt_every=steps, lr=2e-3, ema=0.9, **kw)
    cfg.model = ScoreNetConfig(hidden=64, embed=32, dropout=0.0)
    return cfg


def test_tiny_training_lowers_the_loss(tmp_path):
    train, val = _poses()
    trainer = Trainer(_small(150), train, val, tmp_path)
    before = trainer.validate()
    result = trainer.train()
    assert result["best_val"] < 0.8 * before
    assert (tmp_path / "model.safetensors").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["skeleton"]["joints"][0] == "pelvis"
    assert len(config["space"]["reference_bones"]) == 23


def test_tiny_posterior_mean_training_lowers_the_loss(tmp_path):
    from gfpose_core.prior.train_mean import PosteriorMeanTrainer
    train, val = _poses()
    trainer = PosteriorMeanTrainer(_small(150), train, val, tmp_path)
    before = trainer.validate()
    assert trainer.train()["best_val"] < 0.8 * before
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kind"] == "posterior_mean"
    assert config["training"]["config"]["masking"]["p_3d"] == 1.0
    # shipped in half precision: half the file, the same answers to well under a millimetre
    from gfpose_core.prior.posterior_mean import PosteriorMean, ship
    ship(tmp_path, tmp_path / "shipped")
    size = {p: (p / "model.safetensors").stat().st_size for p in (tmp_path, tmp_path / "shipped")}
    assert size[tmp_path / "shipped"] < 0.6 * size[tmp_path]
    full, half = (PosteriorMean.load(p, torch.device("cpu"), trainer.space) for p in (tmp_path, tmp_path / "shipped"))
    obs = torch.randn(8, 69, generator=torch.Generator().manual_seed(0)).numpy() * 0.5
    cmask = (np.arange(69) < 40).astype(np.float64)[None].repeat(8, 0)
    diff = np.abs(full(obs, cmask) - half(obs, cmask)) * trainer.space.std      # metres
    assert 0 < diff.max() < 1e-3


def _tiny_mlp_run(trainer_cls, out):
    """A tiny run of a network told the body (effector_net.py, body_mean.py), its loss checked to fall."""
    cfg = _small(150)
    cfg.model = ScoreNetConfig(hidden=64, blocks=1)
    train, val = _poses()
    trainer = trainer_cls(cfg, train, val, out)
    before = trainer.validate()
    assert trainer.train()["best_val"] < 0.8 * before
    return trainer


def test_tiny_effector_training_lowers_the_loss_and_ships(tmp_path):
    """The network for posing from effectors (prior/effector_net.py) trains and ships as the posterior mean does."""
    from gfpose_core.prior.effector_net import EffectorMean, trainer_class
    from gfpose_core.prior.posterior_mean import ship
    trainer = _tiny_mlp_run(trainer_class(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kind"] == "effector_mean" and config["model"]["hidden"] == 64
    ship(tmp_path, tmp_path / "shipped")
    net = EffectorMean.load(tmp_path / "shipped", torch.device("cpu"), trainer.space)
    assert net(np.zeros((2, 69)), np.ones((2, 69)), np.zeros((2, 23))).shape == (2, 69)


def test_tiny_body_mean_training_lowers_the_loss_and_tells_only_what_the_known_joints_say(tmp_path):
    """The posterior mean told the body (prior/body_mean.py) trains on hierarchical masks, and is told a bone's
    length only where the known joints say it (both ends, or the mirror bone's), as the engine estimates it."""
    from gfpose_core.prior.body_mean import trainer_class
    trainer = _tiny_mlp_run(trainer_class(), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["kind"] == "body_mean"
    x0, cmask, body = trainer.make_batch(trainer.train_rel[:256], torch.Generator().manual_seed(0))
    known = np.concatenate([np.ones((256, 1), bool), cmask.numpy().reshape(256, 23, 3)[..., 0] > 0], 1)
    from gfpose_core.prior.body_mean import told_bones
    told = told_bones(known)
    assert (body.numpy()[~told] == 0).all() and (body.numpy()[told] != 0).mean() > 0.99


def test_known_noise_trains_on_noisy_known_joints_and_validates_on_clean_ones(tmp_path):
    """--known-noise perturbs what the network is given while training; validation (and the engine) see the truth."""
    from gfpose_core.prior.train_mean import PosteriorMeanTrainer
    train, val = _poses()
    plain = PosteriorMeanTrainer(_small(1), train, val, tmp_path / "a")
    noisy = PosteriorMeanTrainer(_small(1, known_noise=0.05), train, val, tmp_path / "b")
    noisy.ema.load_state_dict(plain.ema.state_dict())
    assert noisy.validate() == pytest.approx(plain.validate())
    batch = plain.make_batch(plain.train_rel[:64], torch.Generator().manual_seed(0))
    noisy.net.load_state_dict(plain.net.state_dict())
    assert plain.net.training and noisy.net.training
    with torch.no_grad():
        assert float(noisy.loss(noisy.net, batch)) != pytest.approx(float(plain.loss(plain.net, batch)))
        assert float(plain.loss(plain.net, batch)) == float(plain.loss(plain.net, batch))   # the noise is all it adds


def test_training_resumes_from_checkpoint(tmp_path):
    train, val = _poses()
    Trainer(_small(20), train, val, tmp_path).train()
    again = Trainer(_small(30), train, val, tmp_path)
    again.resume()
    assert again.step == 20
    assert again.train()["step"] == 30


def test_warm_start_begins_from_trained_weights_and_a_checkpoint_wins(tmp_path):
    train, val = _poses()
    first = Trainer(_small(40), train, val, tmp_path / "a")
    first.train()
    fresh = Trainer(_small(40), train, val, tmp_path / "b")
    assert fresh.validate() > 1.2 * first.validate()
    fresh.warm_start(tmp_path / "a")
    assert fresh.validate() == pytest.approx(first.validate(), rel=1e-5)
    assert "started from the weights" in fresh.data_note
    fresh.train()
    again = Trainer(_small(40), train, val, tmp_path / "b")
    again.warm_start(tmp_path / "a")          # a checkpoint exists: resuming it is what counts
    again.resume()
    assert again.step == 40


def test_sde_marginals_match_the_forward_process():
    """Integrating the forward SDE reproduces marginal_prob's mean and std (sub-VP)."""
    sde, gen = SubVPSDE(), torch.Generator().manual_seed(0)
    x = torch.full((20000, 1), 1.5)
    ts = torch.linspace(0, 0.5, 501)
    for i in range(500):
        t = torch.full((len(x),), float(ts[i]))
        f, g = sde.sde(x, t)
        dt = float(ts[i + 1] - ts[i])
        x = x + f * dt + g[:, None] * dt ** 0.5 * torch.randn(x.shape, generator=gen)
    mean, std = sde.marginal_prob(torch.full((1, 1), 1.5), torch.tensor([0.5]))
    assert abs(x.mean() - mean.item()) < 0.01
    assert abs(x.std() - std.item()) < 0.01


def test_hierarchical_mask_rates():
    cfg = MaskingConfig(p_drop_all=0.1, p_drop_part=0.2, p_drop_joint=0.1)
    m = hierarchical_mask(20000, 23, cfg, torch.Generator().manual_seed(0))
    assert abs((~m).all(1).float().mean().item() - 0.1) < 0.02
    # A joint is kept only if neither it, its part, nor the whole condition is dropped.
    assert abs(m.float().mean().item() - 0.9 * 0.8 * 0.9) < 0.02


def test_score_net_shapes():
    net = ScoreNet(ScoreNetConfig(hidden=64, embed=32))
    out = net(torch.zeros(5, 69), torch.rand(5), torch.zeros(5, 139))
    assert out.shape == (5, 69)


def test_two_process_ddp_gloo(tmp_path):
    from gfpose_core.data import DATA_DIR
    files = [DATA_DIR / "cmu" / "bvh" / f for f in ("05_01.bvh.gz", "05_02.bvh.gz")]
    if not all(f.exists() for f in files):
        pytest.skip("CMU clips not present")
    env = dict(os.environ, OMP_NUM_THREADS="1", GFPOSE_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "gfpose_core", "train", "--data", *map(str, files), "--out", str(tmp_path / "run"),
           "--steps", "6", "--batch", "32", "--hidden", "64", "--embed", "32", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["steps_run"] == 6
    assert "world 2" in config["training"]["machine"]


def test_tiny_motion_training_lowers_the_loss(tmp_path):
    """The motion model's trainer: windows of a real clip, masks over time, the EDM loss falls; weights load."""
    from gfpose_core.data import DATA_DIR, load_take
    from gfpose_core.motion.network import MotionNetConfig
    from gfpose_core.motion.prior import MotionPrior
    from gfpose_core.motion.train import MotionTrainConfig, MotionTrainer
    clip = DATA_DIR / "cmu" / "bvh" / "01_01.bvh.gz"
    if not clip.exists():
        pytest.skip(f"{clip} not present")
    j = load_take(clip).joints[1::4]
    train = {"joints": j[:200], "clip": np.zeros(200, int)}
    val = {"joints": j[200:300], "clip": np.zeros(len(j[200:300]), int)}
    cfg = MotionTrainConfig(steps=400, batch=32, warmup=10, val_every=400, ckpt_every=400, lr=3e-3, ema=0.9)
    cfg.model = MotionNetConfig(frames=16, hidden=32, blocks=2, embed=32, groups=8, dropout=0.0)
    trainer = MotionTrainer(cfg, train, val, tmp_path)
    before = trainer.validate()
    result = trainer.train()
    # it starts from the interpolated keys (a fair guess already), so there is less to gain than from nothing
    assert result["best_val"] < 0.9 * before
    prior = MotionPrior.load(tmp_path, torch.device("cpu"))
    assert prior.frames == 16 and prior.config["format"] == "gfpose-motion-weights-1"
    assert prior.net.cfg.condition == "interpolated" and prior.net.cfg.residual


def test_a_posterior_mean_network_trained_in_the_score_models_space_loads_beside_it(tmp_path):
    """Retraining the posterior-mean network alone (on new data) must give one that the shipped score model takes:
    it is trained in that model's pose space, not its data's own."""
    from gfpose_core.engine import WEIGHTS_DIR, Engine
    from gfpose_core.prior.pose_space import PoseSpace
    from gfpose_core.prior.posterior_mean import PosteriorMean
    from gfpose_core.prior.train_mean import PosteriorMeanTrainer
    train, val = _poses()
    shipped = PoseSpace.from_dict(json.loads((WEIGHTS_DIR / "config.json").read_text())["space"])
    own = PosteriorMeanTrainer(_small(5), train, val, tmp_path / "own")
    assert not np.allclose(own.space.mean, shipped.mean)                  # this clip's own space differs
    trainer = PosteriorMeanTrainer(_small(5), train, val, tmp_path / "pm", space=shipped)
    trainer.train()
    engine = Engine.load(device="cpu")
    PosteriorMean.load(tmp_path / "pm", torch.device("cpu"), engine.space)      # loads beside it
    with pytest.raises(ValueError, match="another pose space"):
        own.train()
        PosteriorMean.load(tmp_path / "own", torch.device("cpu"), engine.space)


def test_proportion_augmentation_draws_one_factor_per_body_part_within_its_range():
    from gfpose_core.body.skeleton import BONES, INDEX
    from gfpose_core.prior.train import PROPORTION_RANGES, proportion_factors
    f = proportion_factors(4000, torch.Generator().manual_seed(0)).numpy()
    child = list(BONES[:, 0])
    for names, span in PROPORTION_RANGES.values():
        cols = [child.index(INDEX[n]) for n in names]
        assert np.allclose(f[:, cols], f[:, cols[:1]])                   # one draw per part, both sides alike
        assert 1 - span <= f[:, cols].min() < 1 - 0.9 * span and 1 + 0.9 * span < f[:, cols].max() <= 1 + span
    assert np.allclose(proportion_factors(10, torch.Generator(), 0.0).numpy(), 1.0)
