"""The classifier's pieces without the CLI: loss, mixing, metrics, backbones, optimizer groups, schedule."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bob.data.errors import BobInputError
from bob.modules.classifier import Classifier, CLIPBackbone, TimmBackbone
from bob.modules.classifier.metrics import classification_metrics
from bob.modules.classifier.mixing import PartwiseMix, real_synthetic_loss
from bob.modules.classifier.schedule import warmup_cosine

NAMES = ["alpha", "beta", "gamma"]


def test_metrics_on_a_hand_made_batch():
    # alpha: 2 of 2 right; beta: 1 of 2; gamma: 0 of 1, 5 images, 3 right.
    labels = torch.tensor([0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 0, 1])
    groups = {"alpha": "many", "beta": "medium", "gamma": "few"}
    metrics = classification_metrics("test", 3, NAMES, groups)
    metrics.update(F.one_hot(predicted, 3).float(), labels)
    values = {k: v.item() for k, v in metrics.compute().items()}
    assert values["test/acc"] == pytest.approx(3 / 5)
    assert values["test/acc_per_class"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert values["test/acc_many"] == pytest.approx(1.0)
    assert values["test/acc_medium"] == pytest.approx(0.5)
    assert values["test/acc_few"] == pytest.approx(0.0)


def test_group_metrics_only_for_long_tail_splits():
    assert set(classification_metrics("val", 3).keys()) == {"val/acc", "val/acc_per_class"}
    grouped = classification_metrics("val", 3, NAMES, {"alpha": "many", "beta": "many", "gamma": "few"})
    assert set(grouped.keys()) == {"val/acc", "val/acc_per_class", "val/acc_many", "val/acc_few"}


def _loss_and_grad(logits, labels, num_real, real_weight):
    logits = logits.clone().requires_grad_(True)
    loss, parts = real_synthetic_loss(logits, F.one_hot(labels, 3).float(), num_real, real_weight)
    loss.backward()
    return loss, parts, logits.grad


def test_loss_weighs_the_two_parts_with_lambda():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    loss, parts, _ = _loss_and_grad(logits, labels, 3, 0.8)
    real = F.cross_entropy(logits[:3], labels[:3])
    synthetic = F.cross_entropy(logits[3:], labels[3:])
    assert loss.item() == pytest.approx((0.8 * real + 0.2 * synthetic).item(), rel=1e-6)
    assert parts["real"].item() == pytest.approx(real.item(), rel=1e-6)
    assert parts["synthetic"].item() == pytest.approx(synthetic.item(), rel=1e-6)
    # A batch with one part only trains on that part's plain cross-entropy.
    real_only, _, _ = _loss_and_grad(logits[:3], labels[:3], 3, 0.8)
    assert real_only.item() == pytest.approx(real.item(), rel=1e-6)


def test_lambda_one_gives_synthetic_logits_no_gradient():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    _, _, grad = _loss_and_grad(logits, labels, 2, 1.0)  # 2 real, 4 synthetic
    assert torch.all(grad[2:] == 0)
    assert torch.all(grad[:2].abs().sum(-1) > 0)
    # And a synthetic-only batch contributes nothing at λ = 1.
    loss, _, grad = _loss_and_grad(logits[3:5], labels[3:5], 0, 1.0)
    assert loss.item() == 0 and torch.all(grad == 0)


def test_lambda_outside_unit_interval_is_refused():
    backbone = TimmBackbone("test_resnet", pretrained=False)
    with pytest.raises(BobInputError, match=r"real_weight.*\[0, 1\].*1.5"):
        Classifier(backbone, num_classes=3, real_weight=1.5)
    with pytest.raises(BobInputError, match="real_weight"):
        Classifier(backbone, num_classes=3, real_weight=-0.1)


def test_mixing_never_crosses_the_real_synthetic_border():
    torch.manual_seed(0)
    mixer = PartwiseMix(num_classes=4, prob=1.0)
    # A real-first batch: 8 real images (all 0, labels {0, 1}), then 8 synthetic ones (all 1, labels {2, 3}).
    is_synthetic = torch.arange(16) >= 8
    images = is_synthetic.float().view(-1, 1, 1, 1).expand(16, 3, 8, 8).clone()
    labels = torch.tensor([0, 1] * 4 + [2, 3] * 4)
    changed = False
    for _ in range(10):
        mixed, targets = mixer(images, labels, 8)
        assert torch.all(mixed[~is_synthetic] == 0) and torch.all(mixed[is_synthetic] == 1)
        assert torch.allclose(targets.sum(-1), torch.ones(16))
        assert torch.all(targets[~is_synthetic][:, 2:] == 0) and torch.all(targets[is_synthetic][:, :2] == 0)
        changed |= bool(((targets > 0) & (targets < 1)).any())
    assert changed, "prob=1 must produce soft targets"


def test_mixing_probability_zero_returns_one_hot_targets():
    mixer = PartwiseMix(num_classes=3, prob=0.0)
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
    mixed, targets = mixer(images, labels, 2)
    assert torch.equal(mixed, images)
    assert torch.equal(targets, F.one_hot(labels, 3).float())


def test_unknown_timm_name_lists_close_names():
    with pytest.raises(BobInputError, match=r"resnet50"):
        TimmBackbone("resnet5O")
    with pytest.raises(BobInputError, match=r"tv2_in1k"):
        TimmBackbone("resnet50.tv3_in1k")


def test_layer_decay_scales_learning_rates_by_depth():
    backbone = TimmBackbone("test_vit", pretrained=False, layer_decay=0.5)
    model = Classifier(backbone, num_classes=3, image_size=32, warmup_epochs=1,
                       optimizer=lambda groups: torch.optim.AdamW(groups, lr=1.0, weight_decay=0.1))
    model.configure_model()
    model.trainer = SimpleNamespace(estimated_stepping_batches=20, num_training_batches=5, accumulate_grad_batches=1)
    optimizer = model.configure_optimizers()["optimizer"]
    lr_of = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    net = backbone.net
    depth = len(net.blocks) + 1  # patch embedding, blocks, then the head at full rate
    assert lr_of[id(net.head.weight)] == pytest.approx(1.0)
    assert lr_of[id(net.blocks[-1].attn.qkv.weight)] == pytest.approx(0.5)
    assert lr_of[id(net.blocks[0].attn.qkv.weight)] == pytest.approx(0.5 ** (depth - 1))
    assert lr_of[id(net.patch_embed.proj.weight)] == pytest.approx(0.5**depth)
    assert wd_of[id(net.blocks[0].attn.qkv.weight)] == 0.1
    assert wd_of[id(net.blocks[0].attn.qkv.bias)] == 0.0 and wd_of[id(net.pos_embed)] == 0.0
    assert all("lr_scale" not in g for g in optimizer.param_groups)


def test_weight_decay_spares_biases_norms_and_position_embeddings():
    backbone = TimmBackbone("test_vit", pretrained=False)
    backbone.build(num_classes=3, prompt_names=NAMES, descriptor="bird", image_size=32)
    decay, no_decay = backbone.param_groups()
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    spared = {id(p) for p in no_decay["params"]}
    net = backbone.net
    assert {id(net.pos_embed), id(net.cls_token), id(net.norm.weight), id(net.head.bias)} <= spared
    assert id(net.head.weight) in {id(p) for p in decay["params"]}


def test_warmup_then_cosine_to_the_floor():
    factor = warmup_cosine(warmup_steps=4, total_steps=14, floor=0.01)
    assert [factor(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factor(9) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(14) == pytest.approx(0.01)
    assert factor(100) == pytest.approx(0.01)


@pytest.mark.parametrize("finetune", ["lora", "linear", "full"])
def test_timm_finetune_modes_choose_trainable_weights(finetune):
    backbone = TimmBackbone("test_vit", pretrained=False, finetune=finetune, lora_rank=4)
    backbone.build(num_classes=3, prompt_names=NAMES, descriptor="bird", image_size=32)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    head = {f"net.head.{n}" for n, _ in backbone.net.head.named_parameters()}
    assert head <= trainable
    if finetune == "linear":
        assert trainable == head
    elif finetune == "lora":
        assert trainable - head and all("lora_" in n for n in trainable - head)
    else:
        assert trainable == {n for n, _ in backbone.named_parameters()}
    assert backbone(torch.rand(2, 3, 32, 32)).shape == (2, 3)


def test_clip_lora_adapts_both_towers_and_scores_prompts(tiny_clip_path):
    backbone = CLIPBackbone(str(tiny_clip_path), lora_rank=4)
    backbone.build(num_classes=3, prompt_names=NAMES, descriptor="aircraft", image_size=32)
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("text_model" in n for n in trainable) and any("vision_model" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "v_proj"}
    assert backbone.prompt_ids.shape[0] == 3
    logits = backbone(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 3)
    # logit_scale · cosine: bounded by the scale.
    assert logits.abs().max() <= backbone.clip.logit_scale.exp() + 1e-4


def test_clip_refuses_an_image_size_its_weights_were_not_made_for(tiny_clip_path):
    with pytest.raises(BobInputError, match="data.image_size=32"):
        CLIPBackbone(str(tiny_clip_path)).build(3, NAMES, "aircraft", image_size=224)


def test_lambda_one_gradients_ignore_synthetic_images(tiny_clip_path):
    """End to end through a CLIP backbone: adding synthetic images to a batch changes no gradient."""
    torch.manual_seed(0)
    backbone = CLIPBackbone(str(tiny_clip_path), lora_rank=4, lora_dropout=0.0)
    model = Classifier(backbone, num_classes=3, prompt_names=NAMES, descriptor="aircraft", image_size=32,
                       real_weight=1.0, mix_prob=0.0)
    model.configure_model()
    with torch.no_grad():  # LoRA B starts at zero; make the adapters matter
        for name, p in backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    real = {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 0]), "is_synthetic": torch.zeros(4, dtype=torch.bool)}
    synthetic_images = torch.rand(3, 3, 32, 32)
    mixed = {
        "image": torch.cat([real["image"][:2], synthetic_images, real["image"][2:]]),
        "label": torch.tensor([0, 1, 2, 2, 1, 2, 0]),
        "is_synthetic": torch.tensor([False, False, True, True, True, False, False]),
    }

    def gradients(batch):
        model.zero_grad()
        model.training_step(batch, 0).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    only_real, with_synthetic = gradients(real), gradients(mixed)
    assert only_real.keys() == with_synthetic.keys() and only_real
    assert any(g.abs().sum() > 0 for g in only_real.values())
    for name in only_real:
        torch.testing.assert_close(with_synthetic[name], only_real[name], rtol=1e-4, atol=1e-6, msg=name)
