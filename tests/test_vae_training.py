"""trainer/vae.py: the VAE of a model trained from scratch learns to reconstruct, and its latent scale."""

from __future__ import annotations

import pytest
import torch

from musedance_core.config import VAEConfig
from trainer.vae import latent_scaling_factor, reconstruction_psnr, train_vae

SIZE = 16
CONFIG = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4)


def scenes(count: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright squares of random colour and place on dark backgrounds, with their masks."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.zeros(count, SIZE, SIZE, 3)
    masks = torch.zeros(count, SIZE, SIZE)
    for i in range(count):
        y, x = torch.randint(0, SIZE - 6, (2,), generator=gen).tolist()
        frames[i] = torch.rand(3, generator=gen) * 0.3
        frames[i, y:y + 6, x:x + 6] = 0.5 + 0.5 * torch.rand(3, generator=gen)
        masks[i, y:y + 6, x:x + 6] = 1
    return (frames * 255).round().to(torch.uint8), masks


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_improves_the_reconstruction_and_is_reproducible():
    frames, masks = scenes()
    losses = []
    untrained = train_vae(frames, masks, CONFIG, steps=1, batch_size=8, lr=1e-9)
    trained = train_vae(frames, masks, CONFIG, steps=60, batch_size=8, lr=3e-3, progress=lambda s, l: losses.append(l))
    assert len(losses) == 60 and sum(losses[-10:]) < 0.7 * sum(losses[:10])
    assert reconstruction_psnr(trained, frames) > reconstruction_psnr(untrained, frames) + 3.0
    again = train_vae(frames, masks, CONFIG, steps=60, batch_size=8, lr=3e-3)
    assert all(torch.equal(p, q) for p, q in zip(trained.parameters(), again.parameters()))
    assert not trained.training and not any(p.requires_grad for p in trained.parameters())


def test_scaling_factor_gives_latents_of_unit_spread():
    frames, masks = scenes()
    vae = train_vae(frames, masks, CONFIG, steps=5, batch_size=8)
    scale = latent_scaling_factor(vae, frames)
    with torch.no_grad():
        latents = vae.encode(frames.permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mean * scale
    assert latents.std().item() == pytest.approx(1.0, rel=1e-3)


def test_bad_inputs_are_refused():
    frames, masks = scenes(4)
    with pytest.raises(ValueError, match="uint8"):
        train_vae(frames.float(), masks, CONFIG, steps=1)
    with pytest.raises(ValueError, match="masks must be"):
        train_vae(frames, masks[:, :8], CONFIG, steps=1)
    with pytest.raises(ValueError, match="at least 1"):
        train_vae(frames, masks, CONFIG, steps=0)
