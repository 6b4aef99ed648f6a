"""Prompt templates shared by fine-tuning and generation, so both stages say the same thing."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping

from bob.data.class_names import with_article
from bob.data.errors import BobInputError

#: BOB's context-preserving template (the paper, Step 2).
CONTEXT_TEMPLATE = "{a_descriptor} photo of a {class_name} in the {background} background with the {pose} pose"
#: DataDream's class-only template.
CLASS_TEMPLATE = "{a_descriptor} photo of a {class_name}"
#: The CLIP classifier's class prompt in the authors' code, which always writes "a" before the
#: descriptor ("a aircraft photo of a 707-320").
CLIP_HEAD_TEMPLATE = "a {descriptor} photo of a {class_name}"

_BUILT_IN = {"a_descriptor", "descriptor", "class_name"}


class PromptTemplate:
    """A ``str.format`` template over the descriptor, the class name and context attributes.

    Placeholders: ``{a_descriptor}`` ("an aircraft"), ``{descriptor}``, ``{class_name}`` and one
    per caption attribute (``{background}``, ``{pose}``...).

    Args:
        template: the format string.
        descriptor: the dataset's super-category ("aircraft", "bird").
    """

    def __init__(self, template: str, descriptor: str):
        self.template = template
        self.descriptor = descriptor
        names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
        if "class_name" not in names:
            raise BobInputError(f"prompt template {template!r} must contain {{class_name}}")
        self.attributes = sorted(names - _BUILT_IN)

    def check_attributes(self, available: Iterable[str]) -> None:
        """Fail before any work when the template asks for context the caption bank lacks."""
        missing = sorted(set(self.attributes) - set(available))
        if missing:
            raise BobInputError(
                f"prompt template {self.template!r} uses {missing}, which the caption bank does not "
                f"provide (it has {sorted(available)}); change the template or the bank's attributes"
            )

    def format(self, class_name: str, context: Mapping[str, str] | None = None) -> str:
        context = context or {}
        self.check_attributes(context.keys())
        values = {a: context[a] for a in self.attributes}
        return self.template.format(
            a_descriptor=with_article(self.descriptor), descriptor=self.descriptor, class_name=class_name, **values
        )
