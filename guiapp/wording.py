"""The engine's messages in the window's words. The engine speaks to the command line
("add --resize", "give the model file with --model"); a dialog names the checkbox or the menu
entry that does the same thing. Applied once, where the window shows an error or a warning."""

from __future__ import annotations

import re

RESIZE = "tick “Resize images to the model's input” (under the data slots)"
# (pattern, window wording), most specific first
PHRASES = [
    (r"\(or turn on resizing, --resize\)", f"(or {RESIZE})"),
    (r"turn on resizing \(--resize\) to scale images bilinearly", f"{RESIZE} to scale them bilinearly"),
    (r"add --resize to scale it bilinearly", f"{RESIZE} to scale it bilinearly"),
    (r"give the model file with --model", "open the model file too (File ▸ Open model), then this weights file "
                                           "(File ▸ Open weights)"),
    (r"give the model file too \(--model\)", "open the model file too (File ▸ Open model)"),
    (r"\(refused; pass --allow-unsafe-model only if you trust this file\)", "(refused: load it only if you trust "
                                                                            "this file)"),
    (r"--random-seeds", "the number of random seeds (Pruning criteria)"),
    (r"--rankings", "the pruning criteria ticked"),
    (r"--clean-valid", "clean validation data (its slot)"),
    (r"--poisoned-valid", "poisoned validation data (its slot)"),
    (r"--clean-test", "clean test data (its slot)"),
    (r"--poisoned-test", "poisoned test data (its slot)"),
    (r"--resize", RESIZE),
    (r"--model", "the model file (File ▸ Open model)"),
    (r"--weights", "the weights file (File ▸ Open weights)"),
]


def window_words(message: str) -> str:
    """``message`` with command-line options replaced by what to do in the window."""
    for pattern, words in PHRASES:
        message = re.sub(pattern, words, message)
    return message
