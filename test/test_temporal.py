"""M+S temporal self-supervision: pose transforms, the temporal warp, minimum reprojection with auto-masking,
and the pose network learning a known motion on our synthetic drive."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from siam_depth_core.data.synthetic import render_synthetic_sequence
from siam_depth_core.geometry import scale_intrinsics
from siam_depth_core.network.model import SiamDepthNet, run_siamese
from siam_depth_core.network.pose import PoseNet, axis_angle_to_matrix, pose_matrix
from siam_depth_core.photometric import photometric_error
from siam_depth_core.training.losses import LossWeights, siamese_loss
from siam_depth_core.training.temporal_loss import (
    IDENTITY_TIE_BREAK,
    TemporalSources,
    clip_pair_transforms,
    frame_sources,
    min_reprojection,
)
from siam_depth_core.training.temporal_warp import intrinsics_at_scale, warp_frame

#: The synthetic rig drives forward along +z at 10 m/s, rendered at 10 Hz: 1 m between frames.
STEP_M = 1.0


def _synthetic_clip(frames: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(F,3,H,W) left frames in [0,1], (F,1,H,W) exact left depth, (1,3,3) K of the synthetic drive."""
    sequence = render_synthetic_sequence(frames, height, width, seed=seed)
    images = torch.from_numpy(sequence.left).permute(0, 3, 1, 2).float() / 255.0
    depth = torch.from_numpy(sequence.depth_m).unsqueeze(1)
    return images, depth, torch.from_numpy(sequence.camera_matrix).float()[None]


def test_rotation_about_y_by_a_quarter_turn() -> None:
    rotation = axis_angle_to_matrix(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))[0]
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(rotation, expected, atol=1e-12)
    assert torch.equal(axis_angle_to_matrix(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))


def test_rotation_leaves_the_identity_with_a_gradient() -> None:
    """A zero-initialised pose head starts at v = 0: there dR/dv must be the cross-product matrix, not zero."""
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    jacobian = torch.autograd.functional.jacobian(lambda v: axis_angle_to_matrix(v)[0], zero)[:, :, 0, :]
    for axis in range(3):
        unit = torch.zeros(1, 3, dtype=torch.float64)
        unit[0, axis] = 1.0
        skew = axis_angle_to_matrix(unit * 1e-8) - torch.eye(3, dtype=torch.float64)  # [e]x to first order
        assert torch.allclose(jacobian[:, :, axis], skew[0] / 1e-8, atol=1e-6)
    for point in ([[1e-4, -2e-4, 3e-4]], [[0.3, -0.2, 0.5]]):  # the series branch and the closed form
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (torch.tensor(point, dtype=torch.float64,
                                                                            requires_grad=True),))


def test_inverted_pose_undoes_the_pose() -> None:
    generator = torch.Generator().manual_seed(1)
    axis_angle = torch.randn(5, 3, generator=generator, dtype=torch.float64) * 0.3
    translation = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    both = pose_matrix(axis_angle, translation) @ pose_matrix(axis_angle, translation, invert=True)
    assert torch.allclose(both, torch.eye(4, dtype=torch.float64).expand(5, 4, 4), atol=1e-12)


def test_intrinsics_at_scale_matches_the_numpy_scaling() -> None:
    camera_matrix = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])
    scaled = intrinsics_at_scale(torch.from_numpy(camera_matrix)[None], 0.25)[0].numpy()
    assert np.allclose(scaled, scale_intrinsics(camera_matrix, 0.25, 0.25))


def test_warp_with_true_depth_and_pose_rebuilds_the_target() -> None:
    """Frame 1 rebuilt from frames 0 and 2 of the synthetic drive with the exact depth and motion."""
    images, depth, camera_matrix = _synthetic_clip(3, 96, 320, seed=3)
    to_previous = pose_matrix(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, STEP_M]]))  # X0 = X1 + (0, 0, 1)
    to_next = pose_matrix(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -STEP_M]]))
    for source, transform in ((images[0:1], to_previous), (images[2:3], to_next)):
        rebuilt = warp_frame(source, depth[1:2], camera_matrix, transform)
        error = photometric_error(images[1:2], rebuilt)
        unwarped = photometric_error(images[1:2], source)
        assert float(error.median()) < 0.03
        assert float(error.mean()) < 0.25 * float(unwarped.mean())
        wrong = warp_frame(source, depth[1:2], camera_matrix, pose_matrix(torch.zeros(1, 3), torch.zeros(1, 3)))
        assert float(photometric_error(images[1:2], wrong).mean()) > 2 * float(error.mean())


def test_min_reprojection_takes_the_best_source_per_pixel() -> None:
    stereo = torch.tensor([[[[0.5, 0.1], [0.3, 0.9]]]])
    previous = torch.tensor([[[[0.2, 0.4], [0.3, 0.8]]]])
    minimum, mask = min_reprojection([stereo, previous])
    assert torch.equal(minimum, torch.tensor([[[[0.2, 0.1], [0.3, 0.8]]]]))
    assert bool(mask.all())


def test_auto_mask_drops_pixels_that_the_unwarped_source_explains() -> None:
    reprojection = torch.tensor([[[[0.10, 0.20], [0.05, 0.30]]]])
    identity = torch.tensor([[[[0.50, 0.01], [0.05, 0.40]]]])  # pixel (0,1): static; pixel (1,0): a tie
    minimum, mask = min_reprojection([reprojection], [identity])
    assert mask.tolist() == [[[[True, False], [False, True]]]]  # a tie goes to the identity: masked out
    assert torch.equal(minimum, torch.tensor([[[[0.10, 0.01], [0.05, 0.30]]]]))
    _, barely = min_reprojection([identity - 2 * IDENTITY_TIE_BREAK], [identity])
    assert bool(barely.all())


def test_a_static_camera_masks_every_pixel_out() -> None:
    images, depth, camera_matrix = _synthetic_clip(2, 64, 192, seed=1)
    target = images[0:1]
    sources = TemporalSources({-1: target.clone()}, {-1: pose_matrix(torch.zeros(1, 3), torch.zeros(1, 3))},
                              camera_matrix, torch.tensor([1.0]))
    disp = 1.0 / depth[0:1]
    stereo_error = torch.full_like(disp, 0.3)
    _, mask = sources.left_appearance(target, images[1:2], stereo_error, disp)
    assert not bool(mask.any())  # the unwarped previous frame equals the target: nothing trains


def test_clip_transforms_pair_forward_and_backward() -> None:
    pose_net = PoseNet()
    frames = torch.rand(2, 4, 3, 64, 64)
    forward, backward = clip_pair_transforms(pose_net, frames)
    assert forward.shape == backward.shape == (2, 3, 4, 4)
    assert torch.allclose(forward @ backward, torch.eye(4).expand(2, 3, 4, 4), atol=1e-5)
    sources = frame_sources(frames, 1, (-1, 1), (forward, backward), torch.eye(3).expand(2, 3, 3), torch.ones(2))
    assert torch.equal(sources.images[-1], frames[:, 0]) and torch.equal(sources.images[1], frames[:, 2])
    assert torch.equal(sources.target_to_source[1], forward[:, 1])
    assert torch.equal(sources.target_to_source[-1], backward[:, 0])


def test_siamese_loss_with_temporal_sources_replaces_the_left_appearance_term() -> None:
    images, depth, camera_matrix = _synthetic_clip(3, 64, 192, seed=2)
    net = SiamDepthNet(width_multiplier=0.125)
    output, _ = run_siamese(net, images[1:2])
    transforms = {-1: pose_matrix(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, STEP_M]])),
                  1: pose_matrix(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -STEP_M]]))}
    sources = TemporalSources({-1: images[0:1], 1: images[2:3]}, transforms, camera_matrix, torch.tensor([5.0]))
    right = images[1:2].roll(2, dims=-1)
    stereo_only, terms = siamese_loss(images[1:2], right, output, LossWeights())
    with_time, terms_time = siamese_loss(images[1:2], right, output, LossWeights(), temporal=sources)
    unchanged, _ = siamese_loss(images[1:2], right, output, LossWeights(), temporal=sources, temporal_weight=0.0)
    assert float(terms_time["appearance"]) < float(terms["appearance"])  # a minimum can only lower the error
    assert with_time.item() < stereo_only.item()
    assert unchanged.item() == pytest.approx(stereo_only.item(), rel=1e-6)
    with_time.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_pose_network_learns_the_synthetic_motion(one_torch_thread) -> None:
    """The pose network alone, trained by the temporal warp with exact depth, recovers the 1 m forward step."""
    clips = [_synthetic_clip(2, 64, 192, seed=seed) for seed in range(4)]
    frames = torch.stack([images for images, _, _ in clips])
    depth_later = torch.stack([depth[1] for _, depth, _ in clips])
    camera_matrix = clips[0][2].expand(len(clips), 3, 3)
    pose_net = PoseNet()
    optimizer = torch.optim.Adam(pose_net.parameters(), lr=1e-3)
    steps = 220
    for _ in range(steps):
        axis_angle, translation = pose_net(frames[:, 0], frames[:, 1])
        rebuilt = warp_frame(frames[:, 0], depth_later, camera_matrix,
                             pose_matrix(axis_angle, translation, invert=True))
        loss = photometric_error(frames[:, 1], rebuilt).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        axis_angle, translation = pose_net(frames[:, 0], frames[:, 1])
    translation_error = (translation - torch.tensor([0.0, 0.0, -STEP_M])).norm(dim=1)
    assert float(translation_error.max()) < 0.1, translation  # metres, after `steps` steps
    assert float(axis_angle.norm(dim=1).max()) < 0.01  # radians: the synthetic rig does not turn
