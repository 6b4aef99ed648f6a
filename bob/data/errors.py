"""Errors raised for bad user input, each saying what was expected and what to do."""


class BobInputError(ValueError):
    """Base class: the user's data or configuration cannot be used as given."""


class DatasetLayoutError(BobInputError):
    """A dataset root is missing or not in the expected on-disk layout."""


class CorruptImageError(BobInputError):
    """An image file cannot be opened or decoded."""


class SplitError(BobInputError):
    """A few-shot split cannot be built or does not match the dataset."""
