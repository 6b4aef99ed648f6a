"""Fitting context prompts into a text encoder's token limit by shortening the longest answer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from bob.data.errors import BobInputError
from bob.data.prompts import PromptTemplate

#: Words a shortened answer must not end on ("parked on a street with" reads as cut off).
DANGLING_WORDS = frozenset(
    "a an the and or but of in on at with to for by from near into onto over under its their "
    "his her is are was were being while as".split()
)
_CLAUSE_BREAK = re.compile(r"\s*[,;:]\s*")


class PromptTooLongError(BobInputError):
    """A prompt cannot be brought under the token limit by shortening its context."""


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens the text encoder sees for ``text``, begin/end tokens included, no truncation."""
    return len(tokenizer(text, truncation=False, verbose=False)["input_ids"])


def token_limit(tokenizer: Any, max_tokens: int | None = None) -> int:
    limit = max_tokens if max_tokens is not None else tokenizer.model_max_length
    if not isinstance(limit, int) or limit <= 2 or limit > 1_000_000:
        raise BobInputError(f"the tokenizer has no usable model_max_length ({limit!r}); pass max_tokens")
    return limit


def shorten_once(text: str) -> str:
    """``text`` less its last clause (after a comma, semicolon or colon), or else less its last
    word; dangling articles, prepositions and conjunctions go with it. One word stays as it is.
    """
    breaks = [m for m in _CLAUSE_BREAK.finditer(text) if 0 < m.start() and m.end() < len(text)]
    words = text[: breaks[-1].start()].split() if breaks else text.split()[:-1]
    while len(words) > 1 and words[-1].lower() in DANGLING_WORDS:
        words.pop()
    return " ".join(words) if words else text


def fit_context_to_token_limit(
    template: PromptTemplate,
    class_name: str,
    context: Mapping[str, str],
    tokenizer: Any,
    max_tokens: int | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Shorten ``context`` until ``template.format(class_name, context)`` fits the token limit.

    Deterministic: each step shortens the attribute with the most tokens (alphabetically first on a
    tie) by one clause, or one word when it has a single clause, so the longest
    answers lose the least informative tail first and short answers stay whole.

    Returns:
        the fitted context and the names of the attributes that were shortened.

    Raises:
        PromptTooLongError: the prompt is too long even with one word per attribute.
    """
    limit = token_limit(tokenizer, max_tokens)
    fitted = dict(context)
    shortened: list[str] = []
    while count_tokens(tokenizer, template.format(class_name, fitted)) > limit:
        lengths = {a: count_tokens(tokenizer, fitted[a]) for a in template.attributes if len(fitted[a].split()) > 1}
        if not lengths:
            raise PromptTooLongError(
                f"prompt {template.format(class_name, fitted)!r} has more than {limit} tokens even with "
                "one word per attribute; use a shorter template or class name"
            )
        longest = max(lengths, key=lambda a: (lengths[a], -template.attributes.index(a)))
        fitted[longest] = shorten_once(fitted[longest])
        if longest not in shortened:
            shortened.append(longest)
    return fitted, shortened


def longest_class_name(class_names: Iterable[str], tokenizer: Any) -> str:
    """The class name with the most tokens: with contexts drawn across classes, every context
    may meet every class, so a context that fits this name fits all of them."""
    names = list(class_names)
    if not names:
        raise BobInputError("no class names given to fit prompts for")
    return max(names, key=lambda name: (count_tokens(tokenizer, name), name))
