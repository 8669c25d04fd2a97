"""One-line messages from the multi-line exceptions that torch and onnxruntime raise."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first non-blank line of `error`'s message, or its type's name when the message is empty."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` says memory ran out (torch raises RuntimeError for it; Python, MemoryError)."""
    message = str(error).lower()
    return isinstance(error, MemoryError) or "out of memory" in message or "allocate memory" in message
