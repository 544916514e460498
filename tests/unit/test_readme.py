"""README promises: the two set-up commands, and a config reference that lists every key."""

from pathlib import Path

from rewardloop.config.reference import markdown, rows

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_config_reference_is_current():
    text = README.read_text()
    missing = [key for key, _, _ in rows() if f"`{key}`" not in text]
    assert not missing, (
        f"README lacks keys {missing}; run `python -m rewardloop.config.reference --write README.md`"
    )
    assert markdown() in text, (
        "README config table is stale: run `python -m rewardloop.config.reference --write README.md`"
    )


def test_every_config_key_has_a_doc_line():
    undocumented = [key for key, _, doc in rows() if not doc]
    assert not undocumented
