"""One rule for thresholds: the CLI, the window and the sweep all go through engine.pruning.thresholds."""

import pytest

from engine.pruning.thresholds import label, parse_thresholds, reached, validate_thresholds


def test_reaching_a_threshold_is_an_exact_relative_drop():
    # baseline 200 correct: a 2 % drop is 4 images, exactly
    assert reached(200, 197, [2, 4, 10]) == []
    assert reached(200, 196, [2, 4, 10]) == [2]
    assert reached(200, 192, [2, 4, 10]) == [2, 4]
    assert reached(200, 180, [2, 4, 10]) == [2, 4, 10]
    assert reached(1000, 975, [2.5]) == [2.5]
    assert reached(1000, 976, [2.5]) == []
    assert reached(0, 0, [2]) == []  # a model that gets nothing right never "drops"


@pytest.mark.parametrize("text, expected", [
    ("2,4,10", (2.0, 4.0, 10.0)),
    (" 10 , 2 ;4 ", (2.0, 4.0, 10.0)),
    ("2%, 4 %", (2.0, 4.0)),
    ("2.5", (2.5,)),
    ("100", (100.0,)),
])
def test_parse_accepts_what_users_type(text, expected):
    assert parse_thresholds(text) == expected


@pytest.mark.parametrize("text, words", [
    ("2,2", "given twice"),
    ("2, 4, 2%", "given twice"),
    ("", "at least one"),
    (" , ", "at least one"),
    ("0", "outside"),
    ("101", "outside"),
    ("-3", "outside"),
    ("nan", "outside"),
    ("two", "not a number"),
])
def test_parse_refuses_with_a_reason(text, words):
    with pytest.raises(ValueError, match=words):
        parse_thresholds(text)


def test_validate_sorts_and_refuses_duplicates():
    assert validate_thresholds([10, 2, 4]) == (2.0, 4.0, 10.0)
    with pytest.raises(ValueError, match="twice"):
        validate_thresholds([4, 4.0])


def test_file_name_label():
    assert label(2.0) == "2" and label(2.5) == "2_5" and label(10) == "10"

