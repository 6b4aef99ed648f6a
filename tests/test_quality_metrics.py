import json
import logging

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

import bob.metrics.distribution as distribution
from bob.data.errors import BobInputError
from bob.metrics import context_dependence, frechet_distance, kernel_distance, mean_pairwise_distance
from bob.metrics.feature_cache import CachedFeatures, RealFeatureCache
from bob.metrics.quality_report import QualitySettings, measure_classes, summarise
from bob.metrics.report_files import comparison, write_report


class IdentityFeatures(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.num_features = dim

    def forward(self, x):
        return x


def torchmetrics_fid(real, fake):
    metric = FrechetInceptionDistance(feature=IdentityFeatures(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


@pytest.mark.parametrize("route", ["gram", "covariance"])
def test_fid_equals_torchmetrics(route, monkeypatch):
    if route == "covariance":
        monkeypatch.setattr(distribution, "_GRAM_LIMIT", 0)
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(40, 6, generator=generator)
    fake = torch.randn(25, 6, generator=generator) * 1.3 + 0.4
    assert frechet_distance(real, fake) == pytest.approx(torchmetrics_fid(real, fake), rel=1e-9)
    # fewer samples than dimensions: singular covariances, where the SVD form is exact
    few_real, few_fake = torch.randn(5, 12, generator=generator), torch.randn(4, 12, generator=generator)
    assert frechet_distance(few_real, few_fake) == pytest.approx(torchmetrics_fid(few_real, few_fake), rel=1e-6)


def test_fid_is_zero_for_identical_sets_and_grows_with_shift():
    features = torch.randn(30, 8, generator=torch.Generator().manual_seed(1))
    assert abs(frechet_distance(features, features.clone())) < 1e-9
    small, large = frechet_distance(features, features + 0.5), frechet_distance(features, features + 2.0)
    assert 0 < small < large
    assert small == pytest.approx(8 * 0.25, rel=1e-6)  # a pure mean shift adds ||shift||^2


def test_kid_is_reproducible_and_separates_shifted_sets():
    generator = torch.Generator().manual_seed(2)
    real, same = torch.randn(30, 8, generator=generator), torch.randn(30, 8, generator=generator)
    first = kernel_distance(real, same, subset_size=10, subsets=50, seed=3)
    assert kernel_distance(real, same, subset_size=10, subsets=50, seed=3) == first
    shifted = kernel_distance(real, same + 1.5, subset_size=10, subsets=50, seed=3)
    assert shifted[0] > 5 * abs(first[0])
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    kernel_distance(real, same, subset_size=10, subsets=5)
    assert torch.rand(1) == expected  # the global RNG is left alone


def test_mean_pairwise_distance():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert mean_pairwise_distance(vectors, "cosine") == pytest.approx(1.0)
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]), "euclidean") == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_distance(vectors[:1])


def test_context_dependence_of_string_labels():
    classes = [c for c in ("707", "A380", "F-16") for _ in range(20)]
    decided = context_dependence(classes, ["sky" if c == "707" else "grass" for c in classes])
    assert decided["nmi"] == pytest.approx(1.0) and decided["p_value"] < 1e-6
    assert decided["context_counts"] == {"grass": 40, "sky": 20}
    independent = context_dependence(classes, ["sky", "grass", "snow", "night"] * 15)
    assert independent["nmi"] == pytest.approx(0.0, abs=1e-9) and independent["cramers_v"] == pytest.approx(0.0, abs=1e-9)
    assert independent["num_images"] == 60
    single = context_dependence(classes, ["sky"] * 60)
    assert single["nmi"] == 0.0 and single["p_value"] == 1.0


def uneven_features():
    """Class 0: 12 real, 15 synthetic; class 1: 3 real, 2 synthetic; class 2: 1 real, 0 synthetic."""
    generator = torch.Generator().manual_seed(4)
    counts = {0: (12, 15), 1: (3, 2), 2: (1, 0)}
    real = torch.cat([torch.randn(n, 4, generator=generator) + label for label, (n, _) in counts.items()])
    fake = torch.cat([torch.randn(m, 4, generator=generator) + label for label, (_, m) in counts.items()])
    real_labels = torch.tensor([label for label, (n, _) in counts.items() for _ in range(n)])
    fake_labels = torch.tensor([label for label, (_, m) in counts.items() for _ in range(m)])
    return real, real_labels, fake, fake_labels


def test_per_class_bookkeeping_with_uneven_classes(caplog):
    real, real_labels, fake, fake_labels = uneven_features()
    settings = QualitySettings(kid_subset_size=10, kid_subsets=20)
    with caplog.at_level(logging.WARNING):
        rows = measure_classes(["big", "small", "lonely", "absent"], real, real_labels, fake, fake_labels, settings)
    assert [(r["class_name"], r["num_real"], r["num_synthetic"]) for r in rows] == [
        ("big", 12, 15), ("small", 3, 2), ("lonely", 1, 0)
    ]
    big, small, lonely = rows
    assert big["fid"] == pytest.approx(frechet_distance(real[:12], fake[:15]))
    assert big["kid"] is not None and big["not_computed"] == {}
    assert small["fid"] is not None and small["kid"] is None
    assert "kid_subset_size" in small["not_computed"]["kid"]
    assert lonely["fid"] is None and lonely["diversity_real"] is None and lonely["diversity_synthetic"] is None
    assert set(lonely["not_computed"]) == {"fid", "kid", "diversity_synthetic", "diversity_real"}
    assert "kid not computed for 2 of 3 class(es)" in caplog.text
    overall = summarise(rows, real, real_labels, fake, fake_labels, settings)
    assert overall["num_classes_fid"] == 2 and overall["num_classes_kid"] == 1
    assert overall["fid_mean"] == pytest.approx((big["fid"] + small["fid"]) / 2)
    assert overall["num_classes_shared"] == 2 and overall["num_real"] == 16 and overall["num_synthetic"] == 17
    pooled = frechet_distance(real[:15], fake)  # classes with both real and synthetic images only
    assert overall["fid_pooled"] == pytest.approx(pooled)


def make_report(rows, overall, name="bob", extractor="TinyFeatures"):
    return {
        "name": name,
        "extractor": {"extractor": extractor, "weights": "x"},
        "real": {"dataset": "toy", "part": "val", "fingerprint": "abc", "split_file": "s.json"},
        "settings": QualitySettings().to_dict(),
        "synthetic": {"folder": f"runs/{name}", "identity": None, "max_images_per_class": None},
        "overall": overall,
        "context": {"detected_synthetic": None, "detected_real": None, "prompted": None, "notes": ["no reader"]},
        "classes": rows,
    }


def test_report_files_have_no_nan_and_compare_sets(tmp_path):
    real, real_labels, fake, fake_labels = uneven_features()
    settings = QualitySettings(kid_subset_size=10, kid_subsets=20)
    rows = measure_classes(["big", "small", "lonely"], real, real_labels, fake, fake_labels, settings)
    other_rows = measure_classes(["big", "small", "lonely"], real, real_labels, fake + 1.0, fake_labels, settings)
    report = make_report(rows, summarise(rows, real, real_labels, fake, fake_labels, settings))
    other = make_report(other_rows, summarise(other_rows, real, real_labels, fake + 1.0, fake_labels, settings), "datadream")
    report["comparisons"] = {"datadream": comparison(report, other, "runs/datadream")}
    assert report["comparisons"]["datadream"]["fid_compared"] == 2
    assert report["comparisons"]["datadream"]["fid_lower_in"] == sum(
        r["fid"] < o["fid"] for r, o in zip(rows, other_rows, strict=True) if r["fid"] is not None
    )
    json_path, markdown_path = write_report(tmp_path, "quality-tiny", report)
    text = json_path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["classes"][2]["fid"] is None
    markdown = markdown_path.read_text()
    assert "| lonely | 1 | 0 | — |" in markdown
    assert "lower per-class FID in" in markdown and "datadream" in markdown
    assert "lonely: kid needs 10 real" in markdown
    report["overall"]["fid_mean"] = float("nan")
    with pytest.raises(ValueError):
        write_report(tmp_path, "broken", report)


def test_comparison_refuses_reports_measured_differently():
    rows = [{"class_name": "a", "fid": 1.0, "kid": None}]
    with pytest.raises(BobInputError, match="extractor.extractor"):
        comparison(make_report(rows, {}), make_report(rows, {}, extractor="InceptionFeatures"), "runs/other")


def test_feature_cache_round_trip_and_mismatch(tmp_path):
    cache = RealFeatureCache(tmp_path / "cache")
    identity = {"real": "abc", "extractor": {"extractor": "TinyFeatures"}, "context_reader": None}
    labels = torch.tensor([0, 0, 1])
    assert cache.load(identity, labels) is None
    cache.save(identity, CachedFeatures(torch.randn(3, 4), labels, ["x", "y", "z"]))
    loaded = cache.load(identity, labels)
    assert loaded is not None and loaded.features.shape == (3, 4) and loaded.contexts == ["x", "y", "z"]
    assert cache.load(identity, torch.tensor([0, 1, 1])) is None  # other images: recomputed, not reused
    assert cache.load({**identity, "real": "other"}, labels) is None
    cache.path(identity).write_bytes(b"not a safetensors file")
    assert cache.load(identity, labels) is None
