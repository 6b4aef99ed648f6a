"""Cleaning of captioner answers: whitespace, trailing period, class-name leaks."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bob.data.class_names import prompt_name, with_article

#: Words that occur in fine-grained class names but just as often describe a scene or a
#: pose ("Russian Blue" vs. "a blue sky", "Great Crested Flycatcher" vs. "great view"), so on
#: their own they do not give the class away. Measured on the released caption banks
#: (docs/captions.md): without this list most "leaks" were colours.
COMMON_WORDS = frozenset(
    """
    a an and the of in on at with to for by or from
    black white red blue green yellow gray grey brown orange pink purple golden gold silver
    dark light bright pale olive ivory rosy rusty scarlet chestnut tan
    great greater lesser little small large big long short tall common northern southern
    eastern western new old regular standard classic extended edition series type
    crew cab club quad sport house tree field rock marsh sea pine palm bank cliff
    house barn cactus meadow orchard prairie ground hooded horned spotted painted
    """.split()
)

_WHITESPACE = re.compile(r"\s+")
_TRAILING_PERIODS = re.compile(r"[\s.]+$")
_NAME_SEPARATORS = re.compile(r"[\s_]+")
_ARTICLE_BEFORE = re.compile(r"\b(a|an|A|An|AN)\s+$")


def strip_trailing_periods(text: str) -> str:
    """The authors' only cleaning of a published caption: surrounding blanks and trailing periods go."""
    return text.strip().rstrip(".")


def normalize_answer(text: str) -> str:
    """One line, single spaces, no trailing period (the released code strips the period too)."""
    return _TRAILING_PERIODS.sub("", _WHITESPACE.sub(" ", text).strip())


def class_name_terms(class_name: str, common_words: Iterable[str] = COMMON_WORDS) -> list[str]:
    """The phrases that give ``class_name`` away: the full name and its distinctive words.

    A word is distinctive unless it is a common word (see `COMMON_WORDS`) or a single letter;
    longest first, so ``Laysan Albatross`` is matched before ``Albatross``.
    """
    common = {w.lower() for w in common_words}
    terms = {prompt_name(class_name)}
    for word in _NAME_SEPARATORS.split(prompt_name(class_name)):
        if len(word) > 1 and word.lower() not in common:
            terms.add(word)
    return sorted((t for t in terms if t), key=lambda t: (-len(t), t.lower()))


def _term_pattern(term: str) -> str:
    # Words of the name may be written with spaces, hyphens, slashes or underscores (the
    # release's folder "F-16A_B" is the variant "F-16A/B"), and plural.
    parts = [re.escape(p) for p in _NAME_SEPARATORS.split(term) if p]
    return r"[\s_/-]+".join(parts) + r"(?:e?s)?"


@dataclass
class LeakRedactor:
    """Replaces mentions of an image's class in its caption by the dataset's descriptor.

    ``"An albatross glides over the sea"`` for class ``Laysan_Albatross`` and descriptor
    ``bird`` becomes ``"A bird glides over the sea"``: the context stays, the class goes.

    Args:
        descriptor: the dataset's super-category ("bird").
        common_words: words never treated as giving a class away on their own.
    """

    descriptor: str
    common_words: frozenset[str] = field(default=COMMON_WORDS)
    _patterns: dict[str, re.Pattern] = field(default_factory=dict, init=False, repr=False)

    def pattern(self, class_name: str) -> re.Pattern:
        if class_name not in self._patterns:
            # "Lincoln Town Car" must not make every "car" a leak in a car dataset.
            terms = class_name_terms(class_name, self.common_words | {self.descriptor.lower()})
            alternatives = "|".join(_term_pattern(t) for t in terms)
            # A run of leaking words ("Laysan albatross") is one mention, replaced once.
            mention = rf"(?:{alternatives})(?:[\s_-]+(?:{alternatives}))*"
            self._patterns[class_name] = re.compile(rf"(?<![\w/-])(?:{mention})(?![\w/-])", re.IGNORECASE)
        return self._patterns[class_name]

    def leaks(self, text: str, class_name: str) -> list[str]:
        """The mentions of ``class_name`` in ``text``."""
        return [m.group(0) for m in self.pattern(class_name).finditer(text)]

    def redact(self, text: str, class_name: str) -> tuple[str, int]:
        """``text`` with every mention replaced by the descriptor, and the number of mentions."""
        pieces, position, count = [], 0, 0
        for match in self.pattern(class_name).finditer(text):
            before = text[position : match.start()]
            article = _ARTICLE_BEFORE.search(before)
            replacement = self.descriptor
            if article:
                # "an albatross" -> "a bird": the article must fit the new noun.
                new_article = with_article(self.descriptor).split()[0]
                if article.group(1)[0].isupper():
                    new_article = new_article.capitalize()
                before = before[: article.start()] + new_article + " "
            elif match.start() == 0 or text[: match.start()].rstrip().endswith((".", "!", "?")):
                replacement = replacement.capitalize()
            pieces += [before, replacement]
            position, count = match.end(), count + 1
        pieces.append(text[position:])
        return "".join(pieces), count
