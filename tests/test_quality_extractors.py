from pathlib import Path

import pytest
import torch

from bob.data.errors import BobInputError
from bob.metrics import CLIPImageFeatures, DINOv2Features, InceptionFeatures, TimmFeatures, VAELatentFeatures


def save_tiny_dinov2(folder: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, patch_size=8, image_size=32)
    Dinov2Model(config).save_pretrained(folder)
    return folder


def save_tiny_clip_vision(folder: Path) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=16,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("kind", "save", "dim"), [(DINOv2Features, save_tiny_dinov2, 32), (CLIPImageFeatures, save_tiny_clip_vision, 16)]
)
def test_hub_extractors_load_from_folder(kind, save, dim, tmp_path):
    folder = save(tmp_path / "model")
    extractor = kind(model=str(folder), input_size=32)
    with pytest.raises(RuntimeError, match="load"):
        extractor(torch.rand(2, 3, 40, 40))
    before = kind(model=str(folder), input_size=None)
    identity_before = before.identity()
    before.load()
    assert before.identity() == identity_before  # the cache key is the same before and after loading
    extractor.load()
    images = torch.rand(3, 3, 40, 40)
    features = extractor(images)
    assert features.shape == (3, dim) and features.dtype == torch.float32
    assert torch.allclose(extractor(images[:1]), features[:1], atol=1e-5)  # per image, batch-independent
    assert not torch.allclose(features[0], features[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert extractor(images).dtype == torch.float32
    identity = extractor.identity()
    assert identity["weights"].startswith("local:") and identity["extractor"] == kind.__name__
    (folder / "model.safetensors").touch()
    assert kind(model=str(folder), input_size=32).identity() != identity  # replaced weights: new cache key


def test_vae_latent_features_from_a_pipeline_folder(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
    )
    vae.save_pretrained(tmp_path / "pipeline" / "vae")
    extractor = VAELatentFeatures(model=str(tmp_path / "pipeline"), grid=2)
    extractor.load()
    images = torch.rand(3, 3, 16, 16)
    features = extractor(images)
    assert features.shape == (3, 4 * 2 * 2)
    assert torch.allclose(extractor(images[:1]), features[:1], atol=1e-5)
    assert not torch.allclose(features[0], features[1])
    with pytest.raises(BobInputError, match="no vae/config.json"):
        VAELatentFeatures(model=str(tmp_path)).load()


def test_timm_features_from_a_weights_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    network = timm.create_model("test_resnet", pretrained=False, num_classes=0).eval()
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp_path / "w.safetensors"))
    extractor = TimmFeatures("test_resnet", weights_file=str(tmp_path / "w.safetensors"), input_size=32)
    extractor.load()
    images = torch.rand(3, 3, 40, 40)
    features = extractor(images)
    mean = torch.tensor(network.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(network.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = network((torch.nn.functional.interpolate(images, size=32, mode="bicubic", antialias=True).clamp(0, 1) - mean) / std)
    assert features.shape == (3, network.num_features)
    assert torch.allclose(features, expected, atol=1e-5)  # the file's weights, normalised input, pooled
    assert extractor.identity()["weights"].startswith("file:")
    with pytest.raises(BobInputError, match="does not exist"):
        TimmFeatures("test_resnet", weights_file=str(tmp_path / "missing.safetensors")).load()
    with pytest.raises(BobInputError, match="timm has no model"):
        TimmFeatures("test_resnett")


def test_uncached_hub_id_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BobInputError, match="not in the local Hugging Face cache"):
        DINOv2Features(model="nobody/no-such-dinov2").load()


def test_inception_without_weights_fails_clearly_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BobInputError, match="weights-inception-2015-12-05-6726825d.pth"):
        InceptionFeatures().load()
    with pytest.raises(BobInputError, match="does not exist"):
        InceptionFeatures(weights_path=str(tmp_path / "missing.pth")).load()


def random_inception_weights(path: Path, monkeypatch) -> Path:
    """A state dict of the FID Inception with random weights (the real file needs a download)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    with monkeypatch.context() as patch:
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        network = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(network.state_dict(), path)
    return path


def test_inception_from_a_local_weights_file(monkeypatch, tmp_path):
    weights = random_inception_weights(tmp_path / "inception.pth", monkeypatch)
    extractor = InceptionFeatures(weights_path=str(weights))
    extractor.load()
    features = extractor(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert extractor.identity()["weights"].startswith("file:")
    torch.save({"not": "tensors", "but": object()}, tmp_path / "code.pth")
    with pytest.raises(BobInputError, match="not an Inception state dict"):
        InceptionFeatures(weights_path=str(tmp_path / "code.pth")).load()
