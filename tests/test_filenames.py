"""What downloaded outputs are called (``filenames.py``)."""

from __future__ import annotations

from imagemill.filenames import output_filename, unique


def test_a_name_is_the_prompt_and_the_seed() -> None:
    named = output_filename(
        prompt="A red fox, in snow!",
        kind="image",
        job_id="job_x",
        index=0,
        outputs=1,
        seed=7,
        content_type="image/png",
    )
    assert named == "a-red-fox-in-snow-seed-7.png"
    untold = output_filename(
        prompt="",
        kind="caption",
        job_id="job_x",
        index=1,
        outputs=2,
        seed=None,
        content_type="text/plain; charset=utf-8",
    )
    assert untold == "caption-job_x-2.txt"


def test_names_in_one_archive_never_repeat() -> None:
    assert unique(["fox.png", "fox.png", "fox-2.png"]) == ["fox.png", "fox-2.png", "fox-2-2.png"]
    assert unique(["a", "a", "a"]) == ["a", "a-2", "a-3"]
    names = ["x.png", "x-2.png", "x.png", "x-3.png", "x.png"]
    assert len(set(unique(names))) == len(names)
