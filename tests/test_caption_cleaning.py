import pytest

from bob.data.caption_cleaning import LeakRedactor, class_name_terms, normalize_answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("  Grass, sky, hangar. ", "Grass, sky, hangar"),
        ("Taxiing on runway...\n", "Taxiing on runway"),
        ("A bird\n\tperched on a branch.", "A bird perched on a branch"),
        (" . ", ""),
        ("", ""),
    ],
)
def test_normalize_answer_strips_whitespace_and_trailing_period(answer, expected):
    assert normalize_answer(answer) == expected


def test_class_terms_keep_distinctive_words_only():
    terms = class_name_terms("002.Black_footed_Albatross")
    assert terms[0] == "Black footed Albatross"
    assert "Albatross" in terms and "footed" in terms
    assert "Black" not in terms  # a colour describes scenes too


@pytest.mark.parametrize(
    ("text", "class_name", "descriptor", "expected", "count"),
    [
        ("An albatross glides over the sea", "Laysan_Albatross", "bird", "A bird glides over the sea", 1),
        ("A Laysan albatross on a rock", "Laysan_Albatross", "bird", "A bird on a rock", 1),
        ("Albatrosses on the shore", "Laysan_Albatross", "bird", "Bird on the shore", 1),
        ("A car parked in front of a Cadillac dealership", "Cadillac CTS-V Sedan 2012", "car",
         "A car parked in front of a car dealership", 1),
        ("The F-16A/B banks left", "F-16A/B", "aircraft", "The aircraft banks left", 1),
        ("an aircraft taxiing", "707-320", "aircraft", "an aircraft taxiing", 0),
        ("Clear blue sky", "Russian_Blue", "pet", "Clear blue sky", 0),
        ("Parked among other cars", "Lincoln Town Car Sedan 2011", "car", "Parked among other cars", 0),
    ],
)
def test_redaction_replaces_the_class_with_the_descriptor(text, class_name, descriptor, expected, count):
    assert LeakRedactor(descriptor).redact(text, class_name) == (expected, count)


def test_leaks_are_found_whole_words_only():
    redactor = LeakRedactor("bird")
    assert redactor.leaks("A warbler sings", "Pine_Warbler") == ["warbler"]
    assert redactor.leaks("Warblers' nests", "Pine_Warbler") == ["Warblers"]
    assert redactor.leaks("Pine needles below", "Pine_Warbler") == []  # "pine" is a place word
    assert redactor.leaks("Swarbler", "Pine_Warbler") == []
