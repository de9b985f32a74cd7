"""Where a clip is cut at its keys: the spans of frames between them."""

from dataclasses import dataclass

__all__ = ["Span", "plan_spans", "span_chain"]


@dataclass(frozen=True)
class Span:
    """Frames between keys. ``kind`` is "before", "between" or "after"."""

    kind: str
    key_a: int  # the key before the frames (None for "before")
    key_b: int  # the key after the frames (None for "after")
    frames: tuple

    @property
    def name(self):
        return f"{self.kind}-{self.key_a}-{self.key_b}"

def plan_spans(frame_numbers, key_numbers):
    """Split a clip's frame numbers at its keys.

    Parameters
    ----------
    frame_numbers : sequence of int
        The clip's frames in order (gaps allowed).
    key_numbers : iterable of int
        Key frames, each one of ``frame_numbers``.

    Returns
    -------
    list of Span
    """
    frames = list(frame_numbers)
    keys = sorted(key_numbers)
    index = {n: i for i, n in enumerate(frames)}
    spans = []
    first, last = index[keys[0]], index[keys[-1]]
    if first > 0:
        spans.append(Span("before", None, keys[0], tuple(frames[:first])))
    for a, b in zip(keys, keys[1:]):
        inner = tuple(frames[index[a] + 1:index[b]])
        if inner:
            spans.append(Span("between", a, b, inner))
    if last < len(frames) - 1:
        spans.append(Span("after", keys[-1], None, tuple(frames[last + 1:])))
    return spans


def span_chain(span):
    """The span's frames with the keys at its ends, in order: the frames its flow and passes visit."""
    return [n for n in (span.key_a, *span.frames, span.key_b) if n is not None]
