"""Turn raw dataset class names into words a text encoder reads well."""

from __future__ import annotations

import re

_NUMBER_PREFIX = re.compile(r"^\d+\.")


def prompt_name(raw: str) -> str:
    """A prompt-friendly class name: numbering and underscores removed, nothing else changed.

    ``001.Black_footed_Albatross`` -> ``Black footed Albatross``; ``F/A-18`` stays ``F/A-18``
    because the slash is part of the variant's real name.
    """
    name = _NUMBER_PREFIX.sub("", raw.strip())
    return " ".join(name.replace("_", " ").split())


def folder_name(raw: str) -> str:
    """A class name as the few-shot split folders of Diff-II write it: numbering dropped, spaces
    and slashes turned into ``_``, nothing else changed.

    ``F/A-18`` -> ``F_A-18``, ``001.Black_footed_Albatross`` -> ``Black_footed_Albatross``,
    ``cyclamen `` -> ``cyclamen_``. These are the names the authors' prompts carry.
    """
    return _NUMBER_PREFIX.sub("", raw).replace(" ", "_").replace("/", "_")


def with_article(noun: str) -> str:
    """``aircraft`` -> ``an aircraft``, ``bird`` -> ``a bird`` (by the first letter's sound)."""
    article = "an" if noun[:1].lower() in "aeiou" else "a"
    return f"{article} {noun}"
