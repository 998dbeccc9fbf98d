"""Monocular video as a training source (issue 25): the folder layout, the crop to the network's aspect and its
K, clips without a stereo partner, mixed stereo + monocular batches, and the temporal term training the depth
and the pose network on monocular clips alone."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from siam_depth_core.data.clips import MixedClipDataset, StereoClipDataset
from siam_depth_core.data.sources import SourceSpec, load_source
from siam_depth_core.data.stereo import StereoRig, StereoSequence
from siam_depth_core.data.synthetic import render_synthetic_sequence
from siam_depth_core.data.video_folder import centre_crop_to_aspect, read_camera_matrix, video_folder_sequence
from siam_depth_core.network.model import SiamDepthNet, run_siamese
from siam_depth_core.network.pose import PoseNet
from siam_depth_core.training.losses import LossWeights, siamese_loss
from siam_depth_core.training.temporal_loss import clip_pair_transforms, frame_sources

SIZE = (64, 192)  # (H, W) of the network in these tests


def _write_video(folder: Path, frames: np.ndarray, camera_matrix: np.ndarray) -> Path:
    """Frames (T,H,W,3) uint8 RGB as PNGs plus a comma-separated K.txt (the Malaga extract's format)."""
    folder.mkdir(parents=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{index:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    rows = [", ".join(f"{v:.6f}" for v in row) for row in camera_matrix]
    (folder / "K.txt").write_text(",\n".join(rows))
    return folder


@pytest.fixture(scope="module")
def synthetic_drive() -> object:
    """Six stereo frames of our synthetic drive at the network's size (1 m forward per frame)."""
    return render_synthetic_sequence(6, *SIZE, seed=3)


def test_a_4_by_3_video_is_centre_cropped_to_the_network_aspect_and_k_follows_the_crop(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (2, 60, 80, 3), dtype=np.uint8)
    camera_matrix = np.array([[62.1, 0.0, 40.4], [0.0, 62.1, 30.9], [0.0, 0.0, 1.0]])
    folder = _write_video(tmp_path / "malaga_like", frames, camera_matrix)
    np.testing.assert_allclose(read_camera_matrix(folder / "K.txt"), camera_matrix)
    sequence = video_folder_sequence(folder, aspect=SIZE[1] / SIZE[0])
    assert sequence.monocular and sequence.left == sequence.right and len(sequence.frames) == 2
    crop = sequence.crop
    assert crop is not None and (crop.width, crop.height) == (80, round(80 / 3.0)) and crop.left == 0
    assert crop.top == (60 - crop.height) // 2 and sequence.rig.image_size == (crop.width, crop.height)
    point = np.array([1.5, -0.7, 9.0])  # metres, camera frame
    pixel = camera_matrix @ point
    pixel_cropped = sequence.rig.camera_matrix @ point
    np.testing.assert_allclose(pixel_cropped[:2] / pixel_cropped[2], pixel[:2] / pixel[2] - [crop.left, crop.top])
    assert centre_crop_to_aspect(1242, 375, 3.25).height == 375  # KITTI (3.31) is wider: the sides go
    spec = SourceSpec(kind="video_folder", root=str(folder))
    assert load_source(spec, aspect=3.0)[0].crop == crop
    with pytest.raises(ValueError, match="needs `root`"):
        SourceSpec(kind="video_folder")
    (folder / "K.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="needs 9 numbers"):
        video_folder_sequence(folder, aspect=3.0)


def _stereo_and_video(tmp_path: Path, drive: object) -> tuple[StereoSequence, StereoSequence]:
    stereo_dir = tmp_path / "stereo"
    stereo_dir.mkdir()
    left, right = [], []
    for index, (image_left, image_right) in enumerate(zip(drive.left, drive.right, strict=True)):
        for name, image, store in (("l", image_left, left), ("r", image_right, right)):
            path = stereo_dir / f"{name}{index}.png"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            store.append(path)
    rig = StereoRig(drive.baseline_m, drive.camera_matrix, (SIZE[1], SIZE[0]))
    stereo = StereoSequence("stereo", tuple(range(len(left))), tuple(left), tuple(right), rig)
    video = video_folder_sequence(_write_video(tmp_path / "video", drive.left, drive.camera_matrix), SIZE[1] / SIZE[0])
    return stereo, video


def test_monocular_clips_carry_no_stereo_partner_and_mix_with_stereo_clips(tmp_path: Path, synthetic_drive) -> None:
    stereo_seq, video_seq = _stereo_and_video(tmp_path, synthetic_drive)
    stereo = StereoClipDataset([stereo_seq], clip_len=1, size=SIZE, context_frames=1)
    video = StereoClipDataset([video_seq], clip_len=1, size=SIZE, context_frames=1, reference_rig=stereo.reference_rig)
    item = video[0]
    assert not bool(item["stereo"]) and bool(stereo[0]["stereo"])
    assert torch.equal(item["left"], item["right"])  # no partner: the left frames stand in
    assert float(item["baseline_ratio"]) == 1.0  # the reference baseline keeps the metric scale
    assert float(item["depth_per_disparity"]) == pytest.approx(float(stereo[0]["depth_per_disparity"]))
    mixed = MixedClipDataset(stereo, video, mono_fraction=0.5, seed=1)
    assert len(stereo) == 4 and len(mixed) == 8
    batch = next(iter(DataLoader(mixed, batch_size=len(mixed))))
    assert batch["stereo"].tolist() == [True] * 4 + [False] * 4
    with pytest.raises(ValueError, match="mono_fraction"):
        MixedClipDataset(stereo, video, mono_fraction=1.0)


def test_the_loss_of_a_monocular_clip_ignores_its_stand_in_partner_and_stereo_flags_change_nothing_else(
        synthetic_drive) -> None:
    images = torch.from_numpy(synthetic_drive.left).permute(0, 3, 1, 2).float() / 255.0
    right = torch.from_numpy(synthetic_drive.right).permute(0, 3, 1, 2).float() / 255.0
    camera_matrix = torch.from_numpy(synthetic_drive.camera_matrix).float()[None]
    torch.manual_seed(0)
    net, pose_net = SiamDepthNet(width_multiplier=0.125), PoseNet()
    frames = images[None, 0:3]
    sources = frame_sources(frames, 1, (-1, 1), clip_pair_transforms(pose_net, frames), camera_matrix,
                            torch.tensor([5.0]))
    output, _ = run_siamese(net, images[1:2])
    mono = torch.tensor([False])
    _, terms_a = siamese_loss(images[1:2], images[1:2], output, LossWeights(), temporal=sources, stereo=mono)
    _, terms_b = siamese_loss(images[1:2], right[1:2], output, LossWeights(), temporal=sources, stereo=mono)
    # the stand-in partner explains nothing: the appearance term is the temporal sources' alone (only the
    # edge-aware smoothness of the unused right channel still looks at it)
    assert terms_a["appearance"].item() == pytest.approx(terms_b["appearance"].item(), rel=1e-6)
    flagged, _ = siamese_loss(images[1:2], right[1:2], output, LossWeights(), temporal=sources,
                              stereo=torch.tensor([True]))
    plain, _ = siamese_loss(images[1:2], right[1:2], output, LossWeights(), temporal=sources)
    assert flagged.item() == pytest.approx(plain.item(), rel=1e-6)
    with pytest.raises(ValueError, match="enable temporal"):
        siamese_loss(images[1:2], right[1:2], output, LossWeights(), stereo=mono)


def test_monocular_clips_alone_train_the_depth_and_the_pose_network(tmp_path: Path, synthetic_drive,
                                                                   one_torch_thread) -> None:
    """Only the temporal term: the pose network leaves zero motion and the photometric loss falls."""
    _, video_seq = _stereo_and_video(tmp_path, synthetic_drive)
    rig = StereoRig(synthetic_drive.baseline_m, synthetic_drive.camera_matrix, (SIZE[1], SIZE[0]))
    video = StereoClipDataset([video_seq], clip_len=1, size=SIZE, context_frames=1, reference_rig=rig)
    batch = next(iter(DataLoader(video, batch_size=len(video))))
    torch.manual_seed(0)
    net, pose_net = SiamDepthNet(width_multiplier=0.125, max_disp=0.1), PoseNet()
    optimizer = torch.optim.Adam([*net.parameters(), *pose_net.parameters()], lr=5e-4)
    losses = []
    for _ in range(40):
        frames = batch["left"]
        transforms = clip_pair_transforms(pose_net, frames)
        sources = frame_sources(frames, 1, (-1, 1), transforms, batch["camera_matrix"], batch["depth_per_disparity"])
        output, _ = run_siamese(net, frames[:, 1])
        loss, _ = siamese_loss(frames[:, 1], batch["right"][:, 1], output, LossWeights(), temporal=sources,
                               stereo=batch["stereo"])
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in (*pose_net.parameters(), *net.parameters()))
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        _, translation = pose_net(frames[:, 0], frames[:, 1])
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    # the zero-initialised pose head has learnt a motion (its direction is not yet right after 40 steps: a
    # monocular clip fixes neither the scale nor, this early, the depth that the motion must agree with)
    assert float(translation.norm(dim=1).min()) > 0.1, translation


def test_training_mixes_a_video_folder_with_a_stereo_folder(tmp_path: Path, synthetic_drive, one_torch_thread) -> None:
    """The trainer end to end: a stereo folder and a monocular video folder in one run (M+S), half of the clips
    monocular; a video source without the temporal term is refused."""
    import yaml

    from siam_depth_core.training.config import load_config
    from siam_depth_core.training.train import build_dataset, train

    stereo_dir = tmp_path / "rig"
    for side, images in (("left", synthetic_drive.left), ("right", synthetic_drive.right)):
        (stereo_dir / side).mkdir(parents=True)
        for index, image in enumerate(images):
            cv2.imwrite(str(stereo_dir / side / f"{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    k = synthetic_drive.camera_matrix
    (stereo_dir / "stereo.yaml").write_text(yaml.safe_dump({"fx": float(k[0, 0]), "cx": float(k[0, 2]),
                                                            "cy": float(k[1, 2]), "baseline": 0.54}))
    video_dir = _write_video(tmp_path / "dashcam", synthetic_drive.left, k)
    sources = f"sources=[{{kind: stereo_folder, root: {stereo_dir}}}, {{kind: video_folder, root: {video_dir}}}]"
    common = [sources, "size=[64,192]", "net_width=0.125", "clip_len=1", "batch_size=4", "num_workers=0",
              "image_interval=0", "augment=false", f"out_dir={tmp_path / 'run'}", "mono_fraction=0.5"]
    with pytest.raises(ValueError, match="set temporal.enabled: true"):
        load_config(None, common)
    config = load_config(None, [*common, "temporal.enabled=true", "max_steps=2"])
    data = build_dataset(config)
    assert isinstance(data.dataset, MixedClipDataset) and len(data.dataset) == 8  # 4 stereo + 4 monocular clips
    assert data.rig.baseline_m == pytest.approx(0.54)  # the stereo rig is the reference
    summary = train(config)
    assert summary.step == 2 and all(np.isfinite(terms["total"]) for terms in summary.losses)
