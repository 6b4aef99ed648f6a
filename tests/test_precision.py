"""`resolve_dtype`: the dtype a module's ``dtype: auto`` means, and the warning for emulated bf16 on a CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from bob.modules import precision
from bob.modules.precision import resolve_dtype

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("choice", "trainer_precision", "device", "on_gpu", "expected"),
    [
        ("auto", "bf16-mixed", CPU, None, torch.bfloat16),
        ("auto", "16-mixed", CPU, None, torch.float16),
        ("auto", "32-true", CPU, torch.float16, torch.float32),
        ("auto", "32-true", torch.device("cuda"), torch.float16, torch.float16),
        ("auto", None, torch.device("cuda"), None, torch.float32),
        ("float32", "bf16-mixed", CPU, None, torch.float32),
    ],
)
def test_auto_follows_the_trainer_precision_and_an_explicit_choice_wins(choice, trainer_precision, device, on_gpu, expected):
    assert resolve_dtype(choice, trainer_precision, device, on_gpu=on_gpu) == expected


def test_bf16_on_a_cpu_without_bf16_kernels_warns_and_names_the_fix(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="configs/trainer/cpu.yaml"):
        assert resolve_dtype("auto", "bf16-mixed", CPU) == torch.bfloat16


@pytest.mark.parametrize(("native", "choice", "device"), [(True, "bfloat16", CPU), (False, "float32", CPU), (False, "bfloat16", torch.device("cuda"))])
def test_no_warning_where_bf16_is_native_or_not_used_on_the_cpu(monkeypatch, native, choice, device):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_dtype(choice, "bf16-mixed", device)
