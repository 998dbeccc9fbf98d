"""Training: config loading, the truncated-BPTT clip step, schedule, checkpoints, exact resume, learning."""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from siam_depth_core.network.checkpoint import read_checkpoint
from siam_depth_core.network.model import SiamDepthNet, run_siamese
from siam_depth_core.training import train as train_module
from siam_depth_core.training.config import TrainConfig, load_config, save_config
from siam_depth_core.training.losses import HintTargets, LossWeights, siamese_loss
from siam_depth_core.training.train import LAST_CHECKPOINT, clip_step, main, make_optimizer, train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "training" / "configs"
TINY_SYNTHETIC = ["dataset=synthetic", "size=[64,128]", "net_width=0.125", "num_workers=0", "image_interval=0",
                  "log_interval=1"]


def test_paper_config_is_the_paper_recipe() -> None:
    config = load_config(CONFIG_DIR / "paper.yaml")
    assert (config.net_width, tuple(config.size), config.batch_size, config.epochs) == (1.0, (256, 512), 4, 50)
    assert (config.lr, config.weight_decay, tuple(config.adam_betas)) == (1e-4, 1e-5, (0.9, 0.999))
    assert config.split == "eigen_full" and config.exclude_eigen_test and config.recurrent and config.siamese
    assert config.loss_weights == LossWeights()


def test_ablation_configs_are_the_table3_rows() -> None:
    rows = {name: load_config(CONFIG_DIR / f"ablation_{name}.yaml")
            for name in ("nonsiamese_unet", "siamese_unet", "siamese_convlstm")}
    assert [(c.siamese, c.recurrent) for c in rows.values()] == [(False, False), (True, False), (True, True)]
    paper = load_config(CONFIG_DIR / "paper.yaml")
    for config in rows.values():  # everything but the architecture is the paper's
        assert (config.lr, config.epochs, tuple(config.size), config.split) == (paper.lr, paper.epochs,
                                                                              tuple(paper.size), paper.split)
    assert len({c.out_dir for c in rows.values()}) == 3


def test_every_shipped_config_loads() -> None:
    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert {"paper.yaml", "small.yaml"} <= {f.name for f in files}
    for path in files:
        assert isinstance(load_config(path), TrainConfig), path
    assert load_config(CONFIG_DIR / "small.yaml").net_width == 0.25


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    config = load_config(CONFIG_DIR / "small.yaml", ["size=[64,192]", "loss_weights.smoothness=0.2", "lr=1e-3",
                                                     "max_steps=7", "amp=bf16"])
    assert tuple(config.size) == (64, 192) and config.loss_weights.smoothness == 0.2 and config.lr == 1e-3
    assert config.loss_weights.appearance == 1.0 and config.max_steps == 7 and config.amp == "bf16"
    assert load_config(save_config(config, tmp_path / "saved.yaml")) == config


@pytest.mark.parametrize(("override", "message"), [
    ("sise=[64,128]", "unknown config key"),
    ("size=[60,128]", "multiples of 32"),
    ("batch_size=two", "must be an integer"),
    ("amp=off", "quote it"),
    ("dataset=nuscenes", "dataset must be one of"),
    ("loss_weights.smoothnes=1", "unknown loss weight"),
    ("lr", "key=value"),
])
def test_bad_config_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_help_documents_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in TrainConfig.__dataclass_fields__:
        assert f"  {name} " in text, name


def test_learning_rate_halves_every_10_epochs_after_30() -> None:
    config = load_config(CONFIG_DIR / "paper.yaml")
    optimizer, scheduler = make_optimizer(torch.nn.Linear(2, 2), config)
    rates = []
    for _ in range(config.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == rates[29] == pytest.approx(1e-4)
    assert rates[30] == rates[39] == pytest.approx(5e-5)
    assert rates[40] == rates[49] == pytest.approx(2.5e-5)


def test_cosine_schedule_decays_from_lr_to_lr_final_by_the_last_epoch() -> None:
    config = load_config(None, ["dataset=synthetic", "epochs=10", "lr=1e-3", "lr_schedule=cosine", "lr_final=1e-5"])
    optimizer, scheduler = make_optimizer(torch.nn.Linear(2, 2), config)
    rates = []
    for _ in range(config.epochs + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3) and rates[10] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))  # falls every epoch
    assert rates[5] == pytest.approx((1e-3 + 1e-5) / 2)  # half way at half time
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        load_config(None, ["lr_schedule=linear"])


def test_ema_weights_are_validated_saved_and_restored(tmp_path: Path) -> None:
    """With ema_decay the epoch checkpoints hold the averaged weights (not the last step's), and last.pt keeps the
    average so that a resumed run continues it."""
    common = [*TINY_SYNTHETIC, "synthetic_clips=4", "clip_len=1", "batch_size=2", "ema_decay=0.9",
              f"out_dir={tmp_path}"]
    train(load_config(None, [*common, "epochs=1"]))
    last = read_checkpoint(tmp_path / LAST_CHECKPOINT)
    epoch_file = read_checkpoint(tmp_path / "epoch_001.pt")
    averaged = {k.removeprefix("module."): v for k, v in last["ema_model"].items() if k.startswith("module.")}
    assert int(last["ema_model"]["n_averaged"]) == 2  # one update per step
    assert set(averaged) == set(epoch_file["model"])
    assert all(torch.equal(averaged[k].to(epoch_file["model"][k].dtype), epoch_file["model"][k]) for k in averaged)
    assert any(not torch.equal(last["model"][k], epoch_file["model"][k]) for k in averaged)  # not the raw weights
    train(load_config(None, [*common, "epochs=2"]))  # resumes: the average goes on counting
    assert int(read_checkpoint(tmp_path / LAST_CHECKPOINT)["ema_model"]["n_averaged"]) == 4


def test_clip_step_carries_state_through_the_clip_and_sums_the_frame_losses() -> None:
    torch.manual_seed(0)
    net = SiamDepthNet(width_multiplier=0.125)
    clip_left, clip_right = torch.rand(2, 2, 3, 64, 64), torch.rand(2, 2, 3, 64, 64)
    with torch.no_grad():  # the same computation by hand: zero state at t=0, carried to t=1
        out0, state = run_siamese(net, clip_left[:, 0])
        out1, _ = run_siamese(net, clip_left[:, 1], state)
        expected = (siamese_loss(clip_left[:, 0], clip_right[:, 0], out0)[0]
                    + siamese_loss(clip_left[:, 1], clip_right[:, 1], out1)[0])
        out1_fresh, _ = run_siamese(net, clip_left[:, 1])
        fresh = (siamese_loss(clip_left[:, 0], clip_right[:, 0], out0)[0]
                 + siamese_loss(clip_left[:, 1], clip_right[:, 1], out1_fresh)[0])
    assert abs(float(expected - fresh)) > 1e-7, "state made no difference: the check would be vacuous"
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    result = clip_step(net, optimizer, scaler, clip_left, clip_right, LossWeights(), True,
                       train_module.nullcontext)
    assert result.terms["total"] == pytest.approx(float(expected), rel=1e-5)
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    pictures = train_module.image_summaries(result)
    assert set(pictures) == {"image/left", "disparity/left", "disparity/right", "warp/left_from_right",
                             "warp/right_from_left", "warp/left_error"}
    assert all(p.shape == (64, 64, 3) and p.dtype == np.uint8 for p in pictures.values())
    with pytest.raises(ValueError, match="N,T,3,H,W"):
        clip_step(net, optimizer, scaler, clip_left[:, 0], clip_right[:, 0], LossWeights(), True,
                  train_module.nullcontext)


def test_clip_step_scales_disparities_to_each_rig_and_adds_the_hint_term() -> None:
    torch.manual_seed(0)
    net = SiamDepthNet(width_multiplier=0.125, max_disp=0.1)
    clip_left, clip_right = torch.rand(2, 1, 3, 64, 64), torch.rand(2, 1, 3, 64, 64)
    rig = train_module.ClipRig(baseline_ratio=torch.tensor([1.0, 2.0]), depth_per_disparity=torch.tensor([0.3, 0.3]))
    hints = (torch.full((2, 1, 1, 64, 64), 0.05), torch.full((2, 1, 1, 64, 64), 0.05))
    with torch.no_grad():
        output, _ = run_siamese(net, clip_left[:, 0])
        scaled = output.scaled(rig.baseline_ratio)
        assert torch.allclose(scaled.disp_refined[0][1], 2 * output.disp_refined[0][1])
        assert torch.equal(scaled.disp_direct[0][0], output.disp_direct[0][0])
        targets = HintTargets(hints[0][:, 0], hints[1][:, 0], rig.depth_per_disparity)
        expected, terms = siamese_loss(clip_left[:, 0], clip_right[:, 0], scaled, LossWeights(), targets)
    assert terms["depth_hint"] > 0
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    result = clip_step(net, optimizer, torch.amp.GradScaler("cuda", enabled=False), clip_left, clip_right,
                       LossWeights(), True, train_module.nullcontext, rig, hints)
    assert result.terms["total"] == pytest.approx(float(expected), rel=1e-5)
    assert result.terms["depth_hint"] == pytest.approx(float(terms["depth_hint"]), rel=1e-5)
    with pytest.raises(ValueError, match="rig"):
        clip_step(net, optimizer, torch.amp.GradScaler("cuda", enabled=False), clip_left, clip_right,
                  LossWeights(), True, train_module.nullcontext, None, hints)


def test_init_from_starts_from_the_weights_and_rejects_another_architecture(tmp_path: Path) -> None:
    first = train(load_config(None, [*TINY_SYNTHETIC, "synthetic_clips=4", "clip_len=1", "batch_size=2",
                                     "max_steps=1", f"out_dir={tmp_path / 'a'}"]))
    source = tmp_path / "a" / LAST_CHECKPOINT
    net = SiamDepthNet(width_multiplier=0.125)
    config = load_config(None, [*TINY_SYNTHETIC, f"init_from={source}"])
    train_module.init_weights_from(source, net, config)
    for name, tensor in _weights(source).items():
        assert torch.equal(net.state_dict()[name], tensor), name
    assert first.step == 1
    fine_tuned = train(load_config(None, [*TINY_SYNTHETIC, "synthetic_clips=4", "clip_len=1", "batch_size=2",
                                          "max_steps=1", f"init_from={source}", f"out_dir={tmp_path / 'b'}"]))
    assert fine_tuned.step == 1  # a fresh run (step counter and optimiser start over)
    with pytest.raises(ValueError, match=r"net_width 0.125 in the checkpoint vs 0.25 in the config.*size "
                                         r"\(64, 128\) in the checkpoint vs \(64, 192\)"):
        train_module.init_weights_from(source, SiamDepthNet(width_multiplier=0.25), load_config(
            None, [*TINY_SYNTHETIC, "net_width=0.25", "size=[64,192]"]))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


#: Set in the child process that runs the resume test (see `test_resume_in_its_own_process`).
_IN_CHILD = "SIAM_DEPTH_RESUME_TEST_CHILD"


def test_resume_in_its_own_process() -> None:
    """The resume test raises a real SIGINT: it runs in a child pytest, because in a process where OpenVINO models
    had been compiled and run before (test_openvino, test_batch_runtime), that SIGINT crashed the process
    (SIGSEGV inside raise(); the cause inside OpenVINO is not found yet, see models/README.md, issue 29)."""
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             f"{__file__}::test_resume_after_an_interrupt_gives_bit_identical_weights"],
                            env={**os.environ, _IN_CHILD: "1"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


@pytest.mark.skipif(_IN_CHILD not in __import__("os").environ,
                    reason="run in its own process by test_resume_in_its_own_process")
def test_resume_after_an_interrupt_gives_bit_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    # 6 clips, batch 2: 3 steps per epoch, 2 epochs, lr decay after epoch 1 -> exercises sampler skip,
    # augmentation-free determinism, optimiser/scheduler/RNG restore across an epoch boundary.
    options = [*TINY_SYNTHETIC, "synthetic_clips=6", "clip_len=2", "batch_size=2", "epochs=2", "lr=1e-3",
               "lr_decay_start=1", "lr_decay_every=1", "deterministic=true", "checkpoint_interval=100",
               "image_interval=3"]
    uninterrupted = train(load_config(None, [*options, f"out_dir={tmp_path / 'a'}"]))
    assert uninterrupted.step == 6 and uninterrupted.epoch == 2

    real_step = train_module.clip_step
    calls = {"n": 0}

    def interrupted_step(*args, **kwargs):  # SIGINT arrives during the 4th step (inside epoch 1)
        calls["n"] += 1
        if calls["n"] == 4:
            signal.raise_signal(signal.SIGINT)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "clip_step", interrupted_step)
    config_b = load_config(None, [*options, f"out_dir={tmp_path / 'b'}"])
    stopped = train(config_b)
    assert stopped.step == 4 and stopped.epoch == 1
    assert (tmp_path / "b" / LAST_CHECKPOINT).is_file()
    monkeypatch.setattr(train_module, "clip_step", real_step)
    resumed = train(config_b)  # auto-resumes from out_dir/last.pt
    assert resumed.step == 6 and len(resumed.losses) == 2

    weights_a, weights_b = _weights(tmp_path / "a" / LAST_CHECKPOINT), _weights(tmp_path / "b" / LAST_CHECKPOINT)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    last_losses = [s["total"] for s in uninterrupted.losses[4:]]
    assert [s["total"] for s in resumed.losses] == last_losses

    payload = read_checkpoint(tmp_path / "b" / LAST_CHECKPOINT)
    assert {"optimizer", "scheduler", "scaler", "epoch", "step", "config", "rng"} <= payload.keys()
    assert payload["meta"]["baseline_m"] == pytest.approx(0.54)  # the synthetic rig's
    assert (payload["meta"]["height"], payload["meta"]["width"]) == (64, 128)
    assert payload["meta"]["git_revision"] and payload["config"]["net_width"] == 0.125
    assert payload["scheduler"]["last_epoch"] == 2
    assert (tmp_path / "b" / "epoch_002.pt").is_file() and list((tmp_path / "b" / "tensorboard").iterdir())


def _lidar_abs_rel(checkpoint_or_net, kitti_root: Path, frames) -> float:
    from siam_depth_core.evaluation.evaluate import evaluate_depth
    from siam_depth_core.runtime.backends.source import CheckpointSource, NetworkSource
    from siam_depth_core.runtime.inference import DepthEstimator

    source = (CheckpointSource(checkpoint_or_net) if isinstance(checkpoint_or_net, Path)
              else NetworkSource(*checkpoint_or_net))
    result = evaluate_depth(DepthEstimator(source), frames, kitti_root)
    return result.summary["0-80m"]["abs_rel"]


def _load_each_item_once(monkeypatch: pytest.MonkeyPatch, dataset_class: type) -> None:
    """Memoise `dataset_class.__getitem__` (items are deterministic without augmentation): the tests'
    time then goes to training, not to decoding the same PNGs or rendering the same clips again."""
    loaded: dict[tuple[int, int], dict] = {}
    load = dataset_class.__getitem__

    def load_once(self, index):
        key = (id(self), index)
        if key not in loaded:
            loaded[key] = load(self, index)
        return loaded[key]

    monkeypatch.setattr(dataset_class, "__getitem__", load_once)


def test_training_on_real_frames_lowers_the_loss_and_improves_lidar_depth(tmp_path: Path, kitti_root: Path,
                                                                          drive_0009: Path, drive_0023: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The small config, shrunk to 64x192 single frames for 150 steps (about a minute on one core): the
    # photometric loss must fall and the metric depth on the held-out drive 0023 must approach the LiDAR.
    from siam_depth_core.data.clips import StereoClipDataset
    from siam_depth_core.data.ground_truth import EvalFrame
    from siam_depth_core.network.checkpoint import ModelMeta

    _load_each_item_once(monkeypatch, StereoClipDataset)

    # lr halved at epochs 8, 10, 12 (12 steps each) so the run ends annealed, not at a noisy point:
    # over seeds 0-3 the held-out abs_rel ratio trained/untrained was 0.50-0.61.
    config = load_config(CONFIG_DIR / "small.yaml", ["size=[64,192]", "clip_len=1", "augment=false",
                                                     "max_steps=150", "lr_decay_start=8", "lr_decay_every=2",
                                                     "num_workers=0", "image_interval=0", f"out_dir={tmp_path}"])
    held_out = [EvalFrame("2011_09_26/2011_09_26_drive_0023_sync", f) for f in range(7)]
    torch.manual_seed(config.seed)  # the initial weights `train` starts from
    meta = ModelMeta(net_width=config.net_width, max_disp=config.max_disp, height=64, width=192, baseline_m=0.5327)
    untrained = _lidar_abs_rel((meta.build_network(), meta), kitti_root, held_out)

    summary = train(config)
    appearance = [step["appearance"] for step in summary.losses]
    first, last = float(np.mean(appearance[:10])), float(np.mean(appearance[-10:]))
    assert last < 0.6 * first, f"photometric loss only went from {first:.3f} to {last:.3f}"
    trained = _lidar_abs_rel(tmp_path / LAST_CHECKPOINT, kitti_root, held_out)
    assert trained < 0.7 * untrained, f"LiDAR abs_rel went from {untrained:.3f} to {trained:.3f}"


def _depth_rank_correlation(checkpoint: Path | None, meta, sequences) -> float:
    from scipy.stats import spearmanr

    from siam_depth_core.geometry import disparity_to_depth
    from siam_depth_core.runtime.backends.source import CheckpointSource, NetworkSource
    from siam_depth_core.runtime.inference import DepthEstimator

    estimator = DepthEstimator(CheckpointSource(checkpoint) if checkpoint else NetworkSource(meta.build_network(), meta))
    scores = []
    for sequence in sequences:
        disp = estimator.predict_sequence([sequence.left[0]]).disparity
        width = sequence.left.shape[2]
        depth = disparity_to_depth(disp, sequence.baseline_m, sequence.camera_matrix[0, 0], width)
        scores.append(spearmanr(np.nan_to_num(depth, nan=1e3).ravel(), sequence.depth_m[0].ravel())[0])
    return float(np.mean(scores))


def test_depth_learned_on_synthetic_stereo_correlates_with_the_exact_depth(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from siam_depth_core.data.synthetic import SyntheticClipDataset, render_synthetic_sequence
    from siam_depth_core.network.checkpoint import ModelMeta

    _load_each_item_once(monkeypatch, SyntheticClipDataset)
    config = load_config(CONFIG_DIR / "small.yaml", ["dataset=synthetic", "synthetic_clips=16", "size=[64,128]",
                                                     "clip_len=1", "max_steps=120", "num_workers=0",
                                                     "image_interval=0", f"out_dir={tmp_path}"])
    unseen = [render_synthetic_sequence(1, 64, 128, seed=1000 + i) for i in range(3)]
    torch.manual_seed(config.seed)
    meta = ModelMeta(net_width=config.net_width, max_disp=config.max_disp, height=64, width=128)
    untrained = _depth_rank_correlation(None, meta, unseen)
    train(config)
    trained = _depth_rank_correlation(tmp_path / LAST_CHECKPOINT, None, unseen)
    # He-initialised, the untrained network already echoes image structure; training must add to it
    assert trained > 0.7 and trained > untrained + 0.3, \
        f"rank correlation {untrained:.2f} untrained, {trained:.2f} trained"


def test_only_the_newest_epoch_checkpoints_are_kept_plus_the_best(tmp_path: Path) -> None:
    config = load_config(None, [*TINY_SYNTHETIC, "synthetic_clips=2", "clip_len=1", "batch_size=2", "epochs=4",
                                "keep_checkpoints=2", f"out_dir={tmp_path}"])
    train(config)
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == ["epoch_003.pt", "epoch_004.pt"]
    best = read_checkpoint(tmp_path / train_module.BEST_CHECKPOINT)
    last = read_checkpoint(tmp_path / LAST_CHECKPOINT)
    assert 1 <= best["epoch"] <= 4 and best["epoch_loss"] == pytest.approx(last["best_epoch_loss"])
    train(load_config(None, [*TINY_SYNTHETIC, "synthetic_clips=2", "clip_len=1", "batch_size=2", "epochs=5",
                             "keep_checkpoints=0", f"out_dir={tmp_path}"]))  # resumes; keeps no epoch file
    assert not list(tmp_path.glob("epoch_*.pt"))


def test_an_unreadable_image_skips_its_clips_with_one_warning(tmp_path: Path, kitti_root: Path, drive_0023: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses
    import shutil

    from siam_depth_core.data.clips import StereoClipDataset
    from siam_depth_core.data.kitti import kitti_raw_sequence

    sequence = kitti_raw_sequence(kitti_root, "2011_09_26/2011_09_26_drive_0023_sync")
    left = []
    for path in sequence.left:
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        left.append(copy)
    left[2].write_bytes(b"not a png")
    damaged = dataclasses.replace(sequence, left=tuple(left))
    dataset = StereoClipDataset([damaged], clip_len=2, size=(32, 64))
    frames = [dataset[i]["frames"].tolist() for i in range(len(dataset))]
    assert [1, 2] not in frames and [2, 3] not in frames
    assert frames[1] == frames[2] == [3, 4]  # clips 1 and 2 hold frame 2: the next readable clip instead
    assert dataset.skipped_files == {left[2]}
    warnings = [r for r in caplog.records if "unreadable image" in r.getMessage()]
    assert len(warnings) == 1 and str(left[2]) in warnings[0].getMessage()


def test_an_out_dir_of_another_network_is_refused(tmp_path: Path) -> None:
    options = [*TINY_SYNTHETIC, "synthetic_clips=2", "clip_len=1", "batch_size=2", "max_steps=1",
               f"out_dir={tmp_path}"]
    train(load_config(None, options))
    with pytest.raises(ValueError, match=r"holds a run of another network \(net_width 0.125 in the checkpoint vs "
                                         r"0.25 in the config\); choose a new out_dir"):
        train(load_config(None, [*options, "net_width=0.25"]))


@pytest.mark.parametrize("case", ["missing config", "bad override", "missing data root", "corrupt resume",
                                  "unwritable out_dir", "init_from of another size", "negative count"])
def test_train_cli_errors_are_one_line_with_exit_code_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture
                                                        ) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 64)
    blocker = tmp_path / "file"
    blocker.write_text("")
    small = [*TINY_SYNTHETIC, "synthetic_clips=2", "batch_size=2", "max_steps=1"]
    arguments = {
        "missing config": ["--config", str(tmp_path / "none.yaml")],
        "bad override": ["--set", "size=[60,128]"],
        "missing data root": ["--set", f"data_root={tmp_path / 'no_kitti'}", "--set", "drives=[a/b]",
                              "--set", f"out_dir={tmp_path / 'run'}"],
        "corrupt resume": [*(f"--set={o}" for o in small), "--set", f"out_dir={tmp_path / 'run'}", "--resume",
                           str(corrupt)],
        "unwritable out_dir": [*(f"--set={o}" for o in small), "--set", f"out_dir={blocker / 'run'}"],
        "init_from of another size": [*(f"--set={o}" for o in small), "--set", "size=[64,192]", "--set",
                                      f"init_from={Path(__file__).resolve().parents[1] / 'models' / 'siam_depth_small.pt'}",
                                      "--set", f"out_dir={tmp_path / 'run'}"],
        "negative count": ["--set", "keep_checkpoints=-1"],
    }[case]
    assert main(arguments) == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("siam-depth-train: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
