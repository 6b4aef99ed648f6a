"""The generation plan: one item (class, index, context, seed, prompt) per synthetic image."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from bob.data.errors import BobInputError
from bob.data.prompt_fit import fit_context_to_token_limit
from bob.data.prompts import PromptTemplate

#: ``marginal``: BOB, a context drawn uniformly over the whole bank (all classes);
#: ``within_class``: only contexts captioned from the same class (ablation);
#: ``none``: no context, the class-only prompt (DataDream);
#: ``fixed``: contexts from a user file (e.g. invented ones), drawn uniformly.
ContextStrategy = Literal["marginal", "within_class", "none", "fixed"]
#: ``image``: every image its own noise and context draw, from (seed, class, index).
#: ``index``: image i of every class shares them, from (seed, index), as the authors' script
#: had it (it reseeds before each class, so all classes get the same contexts and noise).
SeedScope = Literal["image", "index"]
SEED_SCOPES = ("image", "index")
STRATEGIES: tuple[str, ...] = ("marginal", "within_class", "none", "fixed")

_SEED_BITS = 63


class GenerationPlanError(BobInputError):
    """A generation plan cannot be built from the given counts, classes or contexts."""


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from its parts, stable across runs, machines and Python versions.

    Python's ``hash()`` is salted per process, so a cryptographic hash of the joined parts is used.
    """
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - _SEED_BITS)


def image_seed(global_seed: int, class_name: str, index: int, round: int = 0) -> int:
    """The noise seed of image ``index`` of ``class_name``; ``round`` > 0 gives a fresh one."""
    if round == 0:
        return derive_seed(global_seed, class_name, index)
    return derive_seed(global_seed, class_name, index, "round", round)


def _context_draw(global_seed: int, class_name: str, index: int, round: int) -> random.Random:
    # A stream separate from the noise seed: two strategies given the same seed start every
    # image from the same noise, so their comparison is paired.
    return random.Random(derive_seed(global_seed, "context", class_name, index, round))


@dataclass(frozen=True)
class Context:
    """One context a prompt can use.

    Args:
        attributes: attribute name -> text, e.g. ``{"background": "grass", "pose": "taxiing"}``.
        source: where it came from: a caption bank sample id, or ``<file>:<line>``.
        class_name: class of the real image it describes; None for contexts from a file.
    """

    attributes: dict[str, str]
    source: str
    class_name: str | None = None


@dataclass(frozen=True)
class PlanItem:
    """One synthetic image to make.

    Args:
        key: ``<label>/<index>`` zero-padded; names the image file (class names may contain "/").
        label: class index in the dataset's class order.
        class_name: the raw class name.
        index: position of the image within its class, from 0.
        seed: the image's own noise seed.
        prompt: the full text prompt.
        context: the attributes filled into the prompt (empty for ``none``).
        context_source: the `Context.source` used, None for ``none``.
        round: 0 for the first generation, r for the r-th refresh of this image.
        shortened: attribute -> its text as planned, for each attribute that was shortened to
            fit the text encoder's token limit (`GenerationPlan.fit_prompts`); ``prompt`` and
            ``context`` then hold the shortened text.
    """

    key: str
    label: int
    class_name: str
    index: int
    seed: int
    prompt: str
    context: dict[str, str] = field(default_factory=dict)
    context_source: str | None = None
    round: int = 0
    shortened: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def item_key(label: int, index: int) -> str:
    return f"{label:04d}/{index:05d}"


def images_per_class(
    class_names: Sequence[str],
    real_counts: Sequence[int],
    per_class: int | Mapping[str, int] = 100,
    top_up_to: int | None = None,
    real_repeats: int = 1,
) -> list[int]:
    """How many images each class gets.

    Either ``per_class`` (one number, or class name -> number), or the long-tail rule of
    The paper: ``max(0, top_up_to - real_counts[c] * real_repeats)``, so tail classes get most.
    """
    if top_up_to is not None:
        if top_up_to < 1:
            raise GenerationPlanError(f"top_up_to must be >= 1 (images per class after topping up), got {top_up_to}")
        if real_repeats < 0:
            raise GenerationPlanError(f"real_repeats must be >= 0, got {real_repeats}")
        return [max(0, top_up_to - n * real_repeats) for n in real_counts]
    if isinstance(per_class, Mapping):
        unknown = sorted(set(per_class) - set(class_names))
        if unknown:
            raise GenerationPlanError(
                f"images_per_class names {len(unknown)} class(es) the dataset does not have: {unknown[:5]}; "
                f"use the dataset's raw class names, e.g. {list(class_names[:3])}"
            )
        negative = {c: n for c, n in per_class.items() if n < 0}
        if negative:
            raise GenerationPlanError(f"images_per_class must not be negative, got {negative}")
        return [int(per_class.get(name, 0)) for name in class_names]
    if per_class < 1:
        raise GenerationPlanError(
            f"images_per_class must be >= 1, got {per_class}; the paper's recipe uses 100"
        )
    return [int(per_class)] * len(class_names)


def load_context_file(path: str | Path) -> list[Context]:
    """Contexts from a user file: JSON lines (one object per line) or TSV with a header row.

    Every row must carry the same attributes, e.g. ``{"background": "...", "pose": "..."}``.
    """
    path = Path(path)
    if not path.is_file():
        raise GenerationPlanError(f"context file {path} does not exist; it should hold one context per line")
    rows: list[tuple[int, dict[str, str]]] = []
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".tsv":
        reader = csv.DictReader(text.splitlines(), delimiter="\t")
        rows = [(number, dict(row)) for number, row in enumerate(reader, 2)]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise GenerationPlanError(f"{path}:{number} is not a JSON object: {error}") from error
    if not rows:
        raise GenerationPlanError(f"context file {path} holds no contexts")
    attributes = set(rows[0][1])
    contexts = []
    for number, row in rows:
        if not isinstance(row, dict) or set(row) != attributes or not all(isinstance(v, str) for v in row.values()):
            raise GenerationPlanError(
                f"{path}:{number} must have exactly the text attributes {sorted(attributes)}, got {row!r}"
            )
        contexts.append(Context({k: v.strip() for k, v in row.items()}, f"{path.name}:{number}"))
    return contexts


class GenerationPlan:
    """Every synthetic image to make, in a fixed order (class label, then index).

    Each image's noise seed and context draw derive from (seed, class, index) — or (seed,
    index) with ``seed_scope="index"`` — so the plan does not depend on batch size, device count
    or which other classes are planned.

    Args:
        class_names: raw class names in label order.
        prompt_names: the names prompts use, in the same order.
        counts: images per class, in the same order (see `images_per_class`).
        template: the prompt template (context placeholders filled from the drawn context).
        strategy: where contexts come from (see `ContextStrategy`).
        contexts: the pool: caption bank contexts for ``marginal`` / ``within_class``, the
            file's contexts for ``fixed``, unused for ``none``.
        seed: the global seed.
        seed_scope: ``image`` (each image its own seed) or ``index`` (shared across classes).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        prompt_names: Sequence[str],
        counts: Sequence[int],
        template: PromptTemplate,
        strategy: ContextStrategy,
        contexts: Sequence[Context] = (),
        seed: int = 0,
        seed_scope: SeedScope = "image",
    ):
        if seed_scope not in SEED_SCOPES:
            raise GenerationPlanError(f"unknown seed_scope {seed_scope!r}; choose one of {SEED_SCOPES}")
        if strategy not in STRATEGIES:
            raise GenerationPlanError(f"unknown context strategy {strategy!r}; choose one of {STRATEGIES}")
        if not len(class_names) == len(prompt_names) == len(counts):
            raise GenerationPlanError("class_names, prompt_names and counts must have the same length")
        self.class_names = list(class_names)
        self.prompt_names = list(prompt_names)
        self.counts = list(counts)
        self.template = template
        self.strategy = strategy
        self.seed = seed
        self.seed_scope = seed_scope
        self.contexts = list(contexts) if strategy != "none" else []
        self._pools = self._context_pools()
        self.items = [self.item(label, index) for label, n in enumerate(self.counts) for index in range(n)]

    def _context_pools(self) -> dict[str | None, list[Context]]:
        if self.strategy == "none":
            if self.template.attributes:
                raise GenerationPlanError(
                    f"strategy 'none' makes class-only prompts, but the template {self.template.template!r} "
                    f"asks for {self.template.attributes}; use the class-only template"
                )
            return {}
        if not self.contexts:
            source = "context file" if self.strategy == "fixed" else "caption bank"
            raise GenerationPlanError(
                f"strategy {self.strategy!r} needs contexts, but the {source} has no records; "
                "run the caption stage (or fill the file), or use strategy 'none'"
            )
        for context in self.contexts:
            self.template.check_attributes(context.attributes)
        if self.strategy != "within_class":
            return {None: self.contexts}
        pools: dict[str | None, list[Context]] = {}
        for context in self.contexts:
            pools.setdefault(context.class_name, []).append(context)
        uncovered = [c for c, n in zip(self.class_names, self.counts, strict=True) if n > 0 and c not in pools]
        if uncovered:
            raise GenerationPlanError(
                f"strategy 'within_class' needs captions of every planned class; {len(uncovered)} have none, "
                f"e.g. {uncovered[:3]}"
            )
        return pools

    def item(self, label: int, index: int, round: int = 0) -> PlanItem:
        """Image ``index`` of class ``label``; ``round`` > 0 re-draws its noise and context."""
        class_name = self.class_names[label]
        # Under the shared scope every class draws from the same streams.
        stream = class_name if self.seed_scope == "image" else "*"
        context = None
        if self.strategy != "none":
            pool = self._pools[class_name if self.strategy == "within_class" else None]
            context = pool[_context_draw(self.seed, stream, index, round).randrange(len(pool))]
        attributes = dict(context.attributes) if context else {}
        return PlanItem(
            key=item_key(label, index),
            label=label,
            class_name=class_name,
            index=index,
            seed=image_seed(self.seed, stream, index, round),
            prompt=self.template.format(self.prompt_names[label], attributes),
            context={a: attributes[a] for a in self.template.attributes},
            context_source=context.source if context else None,
            round=round,
        )

    def fit_prompts(self, items: Sequence[PlanItem], tokenizer: Any, max_tokens: int | None = None) -> list[PlanItem]:
        """``items`` with every prompt within the text encoder's token limit.

        A prompt over the limit (begin/end tokens included) would be cut at the end by the text
        encoder, losing the pose: its context attributes are shortened instead, the longest
        first, clause by clause (`bob.data.prompt_fit`), never the class name. Shortened items
        record the planned text in ``shortened``. Raises `PromptTooLongError` when even one
        word per attribute is too long.
        """
        fitted = []
        for item in items:
            context, shortened = fit_context_to_token_limit(
                self.template, self.prompt_names[item.label], item.context, tokenizer, max_tokens
            )
            if shortened:
                item = replace(
                    item, prompt=self.template.format(self.prompt_names[item.label], context), context=context,
                    shortened={attribute: item.context[attribute] for attribute in shortened},
                )
            fitted.append(item)
        return fitted

    def __len__(self) -> int:
        return len(self.items)

    @cached_property
    def by_key(self) -> dict[str, PlanItem]:
        return {item.key: item for item in self.items}

    @cached_property
    def fingerprint(self) -> str:
        """A hash of every planned image (key, class, seed, prompt, context source)."""
        rows = [[i.key, i.class_name, i.seed, i.prompt, i.context_source] for i in self.items]
        return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What made the plan, for manifests."""
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "seed_scope": self.seed_scope,
            "template": self.template.template,
            "descriptor": self.template.descriptor,
            "num_contexts": len(self.contexts),
            "num_planned": len(self.items),
            "images_per_class": dict(zip(self.class_names, self.counts, strict=True)),
            "fingerprint": self.fingerprint,
        }

    def select_for_refresh(self, fraction: float, round: int) -> list[PlanItem]:
        """A fraction of the images, re-planned for ``round`` with fresh seeds and contexts.

        Which images are chosen depends only on (seed, round, key), so every rank picks the same.
        """
        if not 0.0 < fraction <= 1.0:
            raise GenerationPlanError(f"refresh fraction must be in (0, 1], got {fraction}")
        if round < 1:
            raise GenerationPlanError(f"refresh round must be >= 1, got {round}")
        ranked = sorted(self.items, key=lambda i: derive_seed(self.seed, "refresh", round, i.key))
        chosen = sorted(ranked[: round_half_up(fraction * len(ranked))], key=lambda i: (i.label, i.index))
        return [self.item(i.label, i.index, round) for i in chosen]


def round_half_up(value: float) -> int:
    return int(value + 0.5)
