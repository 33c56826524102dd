"""Names from outside (ONNX node, tensor and graph names, spec paths) as text that is data, never code.

A model comes from strangers, and its names reach emitted C comments, the terminal and error messages. Here, and
only here, they become safe to show: a character that could act (a control character, an ANSI escape, a bidi
override, a line or paragraph separator, a backslash) is written as `<U+XXXX>`; in a C comment, so are the second
characters of a comment opener or closer (`/*`, `*/`) and of a trigraph (`??`), so nothing can end the comment,
start a preprocessor line or splice lines. A very long name is shortened in the middle, saying how much was left
out. In a C string literal (`c_string`), every byte that is not printable ASCII, and `"`, `\\` and `?`, is an
octal escape, so the literal holds the terminal-safe text and nothing else. Ordinary names (letters, digits,
`_ / . : ; -`, spaces) pass through unchanged, so emitted files stay byte-identical for them.
"""

from __future__ import annotations

import unicodedata

MAX_WORD_CHARS = 200  # a name longer than this is shortened (the zoo's longest is 65)
MAX_TEXT_CHARS = 4000  # a whole comment or message longer than this is cut (names of many words)
# Unicode categories that can change how text after them is read or shown: controls (ESC starts ANSI sequences),
# formats (bidi overrides, zero-width joiners), surrogates, private use, unassigned, line and paragraph separators.
_ACTING_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# After the first character of each pair, the second would act in C: "/*" and "*/" open and close a comment, "??"
# starts a trigraph ("??/" is a backslash, so "??/" then a newline splices lines).
_C_COMMENT_PAIRS = frozenset({("/", "*"), ("*", "/"), ("?", "?")})


def code_point(ch: str) -> str:
    """`ch` as visible, inert text: "<U+001B>"."""
    return f"<U+{ord(ch):04X}>"


def _acts(ch: str) -> bool:
    return ch == "\\" or unicodedata.category(ch) in _ACTING_CATEGORIES


def shortened(word: str, limit: int = MAX_WORD_CHARS) -> str:
    """`word`, or its start and end around a note of how many characters were left out."""
    if len(word) <= limit:
        return word
    head, tail = word[: limit * 3 // 4], word[-(limit // 8):]
    return f"{head}...<{len(word) - len(head) - len(tail)} characters left out>...{tail}"


def _shortened_text(text: str) -> str:
    if all(len(word) <= MAX_WORD_CHARS for word in text.split(" ")) and len(text) <= MAX_TEXT_CHARS:
        return text  # the common case: no work, no change
    text = " ".join(shortened(word) for word in text.split(" "))
    return shortened(text, MAX_TEXT_CHARS)


def comment_text(text: str) -> str:
    """`text` safe inside a C block comment (`/* ... */`), on one line, whatever it holds."""
    out: list[str] = []
    previous = ""  # the last character written as itself ("" after an escape)
    for ch in _shortened_text(text):
        if _acts(ch) or (previous, ch) in _C_COMMENT_PAIRS:
            out.append(code_point(ch))
            previous = ""
        else:
            out.append(ch)
            previous = ch
    return "".join(out)


def terminal_text(text: str) -> str:
    """`text` safe to print on a terminal: one line, no escape sequences or bidi overrides, long names shortened.
    (Rich markup is the printer's business: print it with markup off, or as a rich Text.)"""
    shown = _shortened_text(text)
    if not any(_acts(ch) and ch != "\\" for ch in shown):
        return shown  # a backslash does nothing on a terminal (Windows paths)
    return "".join(code_point(ch) if _acts(ch) and ch != "\\" else ch for ch in shown)


def c_string(text: str) -> str:
    """`text` as shown on a terminal (`terminal_text`), as a C string literal: printable ASCII as itself, every
    other byte of its UTF-8 (and `"`, `\\`, `?`, which could end the literal, escape or start a trigraph) as a
    three-digit octal escape, which never runs into the character after it."""
    out = ['"']
    for byte in terminal_text(text).encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 0x20 <= byte < 0x7F and ch not in '"\\?' else f"\\{byte:03o}")
    return "".join(out) + '"'
