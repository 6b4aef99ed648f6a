"""bob: few-shot fine-grained classification with BOB synthetic data, on PyTorch Lightning."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bob")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202
    # `bob.classify` without importing torch and Lightning on `import bob`.
    if name == "classify":
        from bob.inference import classify

        return classify
    raise AttributeError(f"module 'bob' has no attribute {name!r}")
