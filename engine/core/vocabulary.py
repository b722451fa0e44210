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
# how tables, tooltips and the terminal name each metric in a few words
METRIC_TITLES = dict(zip(METRICS, ("clean val", "ASR val", "clean test", "ASR test")))
# per split: (clean accuracy key, attack success key)
SPLIT_KEYS = {"valid": ("clean_valid_acc", "asr_valid"), "test": ("clean_test_acc", "asr_test")}


def is_poisoned(role: str) -> bool:
    return role.startswith("poisoned")


# ---------------------------------------------------------------- several poisoned sets
# A model may carry several triggers (the challenge's multi_trigger_multi_target BadNet has three),
# each with its own poisoned file. One poisoned set per split keeps the plain role above
# ("poisoned_valid", metric "asr_valid"); with several, each is a named role "poisoned_valid:NAME"
# measured as "asr_valid_NAME", and "asr_valid" becomes the highest of them: a defense holds only
# if every trigger fails.
SET_NAME_CHARS = "letters, digits, '_' and '-'"


def named_role(base: str, name: str) -> str:
    return f"{base}:{name}"


def base_role(role: str) -> str:
    """``poisoned_valid:eyebrows`` → ``poisoned_valid``; a plain role is its own base."""
    return role.split(":", 1)[0]


def set_name(role: str) -> str | None:
    """The name of a named poisoned set's role, None for a plain role."""
    return role.split(":", 1)[1] if ":" in role else None


def valid_set_name(name: str) -> bool:
    return (0 < len(name) <= 40 and name[0].isalnum()
            and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in name))


def is_role(role: str) -> bool:
    """A plain role, or a named poisoned set of one."""
    name = set_name(role)
    return base_role(role) in ROLES and (name is None or (is_poisoned(role) and valid_set_name(name)))


def role_metric(role: str) -> str:
    """The metric measured on ``role``: ``asr_valid`` for the plain poisoned role,
    ``asr_valid_<name>`` for a named set."""
    name = set_name(role)
    return ROLE_METRIC[base_role(role)] + (f"_{name}" if name else "")


def role_title(role: str) -> str:
    name = set_name(role)
    return ROLE_TITLES.get(base_role(role), role) + (f" · {name}" if name else "")


def ordered_roles(roles) -> list[str]:
    """Roles in the lab's order (clean/poisoned × validation/test), named sets in the order given."""
    roles = list(dict.fromkeys(roles))
    return sorted(roles, key=lambda r: (ROLES.index(base_role(r)), roles.index(r)))


def poisoned_roles(roles, split: str) -> list[str]:
    """The poisoned sets of ``split`` ("valid" or "test"), plain or named, in order."""
    return [r for r in ordered_roles(roles) if base_role(r) == f"poisoned_{split}"]


def primary_role(roles, base: str) -> str | None:
    """The set that stands for ``base`` where one set is needed (the difference criterion's
    means are pooled instead): the plain role, else the first named one."""
    roles = ordered_roles(roles)
    if base in roles:
        return base
    return next((r for r in roles if base_role(r) == base), None)


def set_metric_keys(roles) -> list[str]:
    """The per-set metrics beyond :data:`METRICS` (``asr_valid_<name>``...), in role order."""
    return [role_metric(r) for r in ordered_roles(roles) if set_name(r)]


def aggregate_metric(key: str) -> str | None:
    """``asr_valid_<name>`` → ``asr_valid`` (the metric that aggregates it), else None."""
    for m in METRICS:
        if m.startswith("asr") and key.startswith(m + "_"):
            return m
    return None
