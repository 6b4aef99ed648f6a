import json
from pathlib import Path

import pytest

from bob.data.caption_bank import CaptionBank, CaptionBankError, CaptionRecord
from bob.data.caption_tsv import export_tsv_bank, import_tsv_bank, main, read_tsv_pair
from bob.data.prompt_fit import PromptTooLongError, count_tokens, fit_context_to_token_limit, shorten_once
from bob.data.prompts import CONTEXT_TEMPLATE, PromptTemplate
from bob.data.records import ImageRecord
from tests.tiny_models import tiny_clip_tokenizer

RELEASE_PREFIX = "../dataset/datasets/aircraft/5shot/train"
#: The sample ids of those images in a Diff-II split folder (``data/diff-ii/aircraft``).
SPLIT_PREFIX = "5shot/train"


def write_release_tsvs(folder: Path, rows: dict[str, tuple[str, str]]) -> Path:
    """The release's format: header, no trailing newline, keyed by the authors' image paths."""
    folder.mkdir(parents=True, exist_ok=True)
    for column, attribute in enumerate(("background", "pose")):
        lines = ["image\tresponse"] + [f"{image}\t{answers[column]}" for image, answers in rows.items()]
        (folder / f"{attribute}.tsv").write_text("\n".join(lines), encoding="utf-8")
    return folder


RELEASE_ROWS = {
    f"{RELEASE_PREFIX}/707-320/0.jpg": ("Airport setting with buildings and trees.", "Taxiing on runway."),
    f"{RELEASE_PREFIX}/707-320/1.jpg": ("Grass, sky, hangar.", "The aircraft is stationary on grass."),
    f"{RELEASE_PREFIX}/F-16A_B/0.jpg": ("Clear blue sky.", "The F-16A/B banks left in flight."),
}


def train_records(root: Path) -> list[ImageRecord]:
    return [
        ImageRecord("train/707-320/0.jpg", root / "train/707-320/0.jpg", 0, "707-320"),
        ImageRecord("train/707-320/1.jpg", root / "train/707-320/1.jpg", 0, "707-320"),
        ImageRecord("train/F-16A_B/0.jpg", root / "train/F-16A_B/0.jpg", 1, "F-16A/B"),
    ]


def test_release_tsvs_import_keeps_the_published_text(tmp_path):
    rows = {**RELEASE_ROWS, f"{RELEASE_PREFIX}/707-320/2.jpg": ("  A red  convertible hangar..", "Parked. ")}
    folder = write_release_tsvs(tmp_path / "aircraft_5shot", rows)
    bank = import_tsv_bank(folder, class_names=["707-320", "F-16A/B"], descriptor="aircraft")
    # Only surrounding blanks and trailing periods go, as in the authors' code; inner text is kept.
    assert bank[f"{SPLIT_PREFIX}/707-320/2.jpg"].attributes == {"background": "A red  convertible hangar", "pose": "Parked"}
    record = bank[f"{SPLIT_PREFIX}/F-16A_B/0.jpg"]
    assert record.class_name == "F-16A/B"
    assert record.attributes == {"background": "Clear blue sky", "pose": "The F-16A/B banks left in flight"}
    assert record.notes == [] and bank.note_counts() == {}
    assert bank.manifest["redact_leaks"] is False


def test_release_tsvs_import_can_redact_class_names(tmp_path):
    folder = write_release_tsvs(tmp_path / "aircraft_5shot", RELEASE_ROWS)
    bank = import_tsv_bank(folder, class_names=["707-320", "F-16A/B"], descriptor="aircraft", redact_leaks=True)
    record = bank[f"{SPLIT_PREFIX}/F-16A_B/0.jpg"]
    assert record.class_name == "F-16A/B"
    assert record.attributes == {"background": "Clear blue sky", "pose": "The aircraft banks left in flight"}
    assert record.raw["pose"] == "The F-16A/B banks left in flight."
    assert record.notes == ["redacted:pose"]
    assert bank.note_counts() == {"redacted": 1}
    assert bank[f"{SPLIT_PREFIX}/707-320/1.jpg"].attributes["background"] == "Grass, sky, hangar"


def test_tsv_round_trip_keeps_every_record(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    bank = import_tsv_bank(folder)
    exported = tmp_path / "exported"
    export_tsv_bank(bank, exported)
    again = import_tsv_bank(exported)
    assert again.contexts() == bank.contexts()
    assert [(r.sample_id, r.class_name) for r in again.records.values()] == [
        (r.sample_id, r.class_name) for r in bank.records.values()
    ]
    export_tsv_bank(bank, tmp_path / "raw", use_raw=True)
    published = {key.removeprefix("../dataset/datasets/aircraft/"): answers for key, answers in read_tsv_pair(folder).items()}
    assert read_tsv_pair(tmp_path / "raw") == published


def test_bank_folder_round_trip_through_the_command(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    main(["import", str(folder), str(tmp_path / "bank"), "--descriptor", "aircraft", "--redact_leaks", "true"])
    bank = CaptionBank.load(tmp_path / "bank")
    manifest = json.loads((tmp_path / "bank" / "manifest.json").read_text())
    assert len(bank) == 3 and manifest["source"] == "tsv" and manifest["note_counts"] == {"redacted": 1}
    main(["export", str(tmp_path / "bank"), str(tmp_path / "out")])
    assert (tmp_path / "out" / "pose.tsv").read_text().splitlines()[0] == "image\tresponse"


def test_tsv_pair_with_different_keys_lists_the_mismatches(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    lines = (folder / "pose.tsv").read_text().splitlines()
    lines[1] = lines[1].replace("0.jpg", "9.jpg")
    (folder / "pose.tsv").write_text("\n".join(lines))
    with pytest.raises(CaptionBankError, match=r"1 only in background.tsv .*707-320/0\.jpg.*1 only in pose.tsv .*9\.jpg"):
        import_tsv_bank(folder)


def test_tsv_without_header_is_refused(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    text = (folder / "background.tsv").read_text()
    (folder / "background.tsv").write_text(text.split("\n", 1)[1])
    with pytest.raises(CaptionBankError, match="header"):
        import_tsv_bank(folder)


def test_import_matches_release_paths_to_the_split(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    train = train_records(tmp_path / "data")
    bank = import_tsv_bank(folder, train=train)
    assert sorted(bank.records) == sorted(r.sample_id for r in train)
    assert bank["train/F-16A_B/0.jpg"].class_name == "F-16A/B"
    bank.check_matches(train)


def test_import_against_another_split_says_what_differs(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    train = train_records(tmp_path / "data")[:2] + [
        ImageRecord("train/F-16A_B/7.jpg", tmp_path / "x.jpg", 1, "F-16A/B")
    ]
    with pytest.raises(CaptionBankError, match=r"1 captioned image.*F-16A_B/0\.jpg.*1 training image.*F-16A_B/7\.jpg"):
        import_tsv_bank(folder, train=train)


def test_import_with_unknown_classes_fails(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    with pytest.raises(CaptionBankError, match="F-16A_B"):
        import_tsv_bank(folder, class_names=["707-320", "A380"])


def make_bank(ids_and_classes, manifest=None):
    records = [CaptionRecord(i, c, {"background": "grass", "pose": "parked"}) for i, c in ids_and_classes]
    return CaptionBank(records, manifest=manifest)


def test_check_matches_names_missing_extra_and_wrong_class(tmp_path):
    train = train_records(tmp_path)
    bank = make_bank(
        [("train/707-320/0.jpg", "707-320"), ("train/F-16A_B/0.jpg", "707-320"), ("train/other.jpg", "707-320")],
        manifest={"complete": False, "failed": {"train/707-320/1.jpg": "cannot decode image"}},
    )
    with pytest.raises(CaptionBankError) as error:
        bank.check_matches(train)
    message = str(error.value)
    assert "1 training image(s) have no caption" in message and "707-320/1.jpg" in message
    assert "not in the split" in message and "train/other.jpg" in message
    assert "name another class" in message and "F-16A_B/0.jpg" in message
    assert "cannot decode image" in message
    assert not bank.complete


def test_shorten_once_drops_a_clause_then_words_without_dangling_words():
    assert shorten_once("Grass, sky, hangar") == "Grass, sky"
    assert shorten_once("A car is parked on a street with other vehicles") == "A car is parked on a street with other"
    assert shorten_once("A car is parked on a street") == "A car is parked"
    assert shorten_once("Runway") == "Runway"


def test_fit_shortens_the_longest_attribute_until_the_prompt_fits(tmp_path):
    tokenizer = tiny_clip_tokenizer(tmp_path / "tok")  # one token per character
    template = PromptTemplate(CONTEXT_TEMPLATE, "aircraft")
    context = {"background": "Airport tarmac, control tower, buses, trees, hangars", "pose": "Taxiing"}
    assert count_tokens(tokenizer, template.format("707-320", context)) > 90
    fitted, shortened = fit_context_to_token_limit(template, "707-320", context, tokenizer, max_tokens=90)
    assert shortened == ["background"]
    assert fitted["pose"] == "Taxiing"
    assert context["background"].startswith(fitted["background"])
    assert count_tokens(tokenizer, template.format("707-320", fitted)) <= 90
    with pytest.raises(PromptTooLongError, match="one word per attribute"):
        fit_context_to_token_limit(template, "707-320", context, tokenizer, max_tokens=50)


def test_fitted_bank_fits_every_class_and_counts_shortened_captions(tmp_path):
    tokenizer = tiny_clip_tokenizer(tmp_path / "tok")
    template = PromptTemplate(CONTEXT_TEMPLATE, "aircraft")
    long_background = "Airport tarmac, control tower, buses, trees, hangars"
    bank = CaptionBank(
        [
            CaptionRecord("a.jpg", "707-320", {"background": long_background, "pose": "Taxiing"}),
            CaptionRecord("b.jpg", "A380", {"background": "Sky", "pose": "Flying"}),
        ]
    )
    classes = ["707-320", "Embraer Legacy 600"]
    # 106 tokens with its own class, 115 with the longest: only the cross-class pairing overflows.
    assert count_tokens(tokenizer, template.format("707-320", bank["a.jpg"].attributes)) <= 110
    fitted = bank.fit_to_token_limit(template, tokenizer, classes, max_tokens=110)
    for record in fitted.records.values():
        for name in classes:
            assert count_tokens(tokenizer, template.format(name, record.attributes)) <= 110
    assert fitted["a.jpg"].notes == ["shortened:background"]
    assert fitted["a.jpg"].raw["background"] == long_background
    assert fitted["b.jpg"].attributes == bank["b.jpg"].attributes
    fit = fitted.manifest["prompt_fit"]
    assert (fit["num_shortened_captions"], fit["longest_class_name"], fit["max_tokens"]) == (1, "Embraer Legacy 600", 110)
    saved = CaptionBank.load(fitted.save(tmp_path / "bank"))
    assert saved.manifest["note_counts"] == {"shortened": 1}


def bank_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_import_of_header_only_tsvs_leaves_the_old_bank_untouched(tmp_path):
    main(["import", str(write_release_tsvs(tmp_path / "release", RELEASE_ROWS)), str(tmp_path / "bank")])
    before = bank_files(tmp_path / "bank")
    empty = write_release_tsvs(tmp_path / "empty", {})
    with pytest.raises(CaptionBankError, match="only the header"):
        main(["import", str(empty), str(tmp_path / "bank"), "--overwrite", "true"])
    assert bank_files(tmp_path / "bank") == before


def test_import_refuses_a_non_empty_folder_unless_asked_and_never_mixes_sources(tmp_path):
    folder = write_release_tsvs(tmp_path / "release", RELEASE_ROWS)
    target = tmp_path / "bank"
    target.mkdir()
    (target / "progress.jsonl").write_text("{}\n")  # a caption stage's file
    with pytest.raises(CaptionBankError, match="not empty.*--overwrite"):
        main(["import", str(folder), str(target)])
    assert bank_files(target) == {"progress.jsonl": b"{}\n"}
    main(["import", str(folder), str(target), "--overwrite", "true"])
    assert sorted(bank_files(target)) == ["manifest.json", "records.jsonl"]  # the whole folder was replaced
    assert len(CaptionBank.load(target)) == 3
