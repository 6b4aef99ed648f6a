"""Match sanitised class-folder names ("F_A-18", "am_general_hummer_suv_2000") to raw class names."""

from __future__ import annotations

import difflib
import re

from bob.data.errors import SplitError

_NUMBER_PREFIX = re.compile(r"^\d+\.")
_SEPARATORS = re.compile(r"[^0-9a-z]+")


def folder_key(name: str) -> str:
    """The form a class name and its folder name share.

    Casefold, drop a leading ``NNN.`` numbering, turn every run of characters other than
    letters and digits into ``_``, trim ``_`` at the ends. So "F/A-18" and "F_A-18" give
    ``f_a_18``; "Ram C/V Cargo Van Minivan 2012" and "ram_c_v_cargo_van_minivan_2012" give
    ``ram_c_v_cargo_van_minivan_2012``; "001.Black_footed_Albatross" gives ``black_footed_albatross``.
    """
    name = _NUMBER_PREFIX.sub("", name.strip()).casefold()
    return _SEPARATORS.sub("_", name).strip("_")


def match_class_folders(folders: list[str], class_names: list[str], where: str) -> dict[str, int]:
    """Folder name -> label; every folder must match exactly one class and no class twice."""
    by_key: dict[str, list[int]] = {}
    for label, name in enumerate(class_names):
        by_key.setdefault(folder_key(name), []).append(label)
    matched: dict[str, int] = {}
    unmatched, ambiguous = [], []
    for folder in folders:
        labels = by_key.get(folder_key(folder), [])
        if len(labels) == 1:
            matched[folder] = labels[0]
        elif labels:
            ambiguous.append(f"{folder!r} fits {[class_names[label] for label in labels]}")
        else:
            close = difflib.get_close_matches(folder_key(folder), list(by_key), n=3, cutoff=0.6)
            hint = f" (closest: {[class_names[by_key[k][0]] for k in close]})" if close else ""
            unmatched.append(f"{folder!r}{hint}")
    twice: dict[int, list[str]] = {}
    for folder, label in matched.items():
        twice.setdefault(label, []).append(folder)
    repeated = [f"{class_names[label]!r} <- {found}" for label, found in twice.items() if len(found) > 1]
    problems = [
        (unmatched, "folder(s) match no class of the dataset"),
        (ambiguous, "folder(s) match several classes"),
        (repeated, "class(es) have several folders"),
    ]
    message = "; ".join(f"{len(items)} {text}: {', '.join(items[:5])}" for items, text in problems if items)
    if message:
        raise SplitError(
            f"class folders under {where} do not map one-to-one onto the dataset's classes: {message}. "
            "A folder matches a class when both read the same after lower-casing, dropping a leading "
            "'NNN.' and turning every run of other characters than letters and digits into '_'; rename the folders"
        )
    return matched
