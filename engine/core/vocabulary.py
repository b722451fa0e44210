"""The words every layer shares, written once: the four dataset roles, the metric measured on
each, and how people read them. ``metrics.csv``'s columns, ``summary.json``'s keys, the curves
and the tables all take their names from here."""

from __future__ import annotations

ROLES = ("clean_valid", "poisoned_valid", "clean_test", "poisoned_test")
ROLE_TITLES = {
    "clean_valid": "Clean validation",
    "poisoned_valid": "Poisoned validation",
    "clean_test": "Clean test",
    "poisoned_test": "Poisoned test",
}
# the metric measured on each role: clean accuracy on clean data, attack success on poisoned data
METRICS = ("clean_valid_acc", "asr_valid", "clean_test_acc", "asr_test")
ROLE_METRIC = dict(zip(ROLES, METRICS))
# per split: (clean accuracy key, attack success key)
SPLIT_KEYS = {"valid": ("clean_valid_acc", "asr_valid"), "test": ("clean_test_acc", "asr_test")}


def is_poisoned(role: str) -> bool:
    return role.startswith("poisoned")
