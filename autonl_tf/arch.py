"""The one architecture-string codec of autonl_tf.

Every reader and writer of architectures goes through this module: the named models in
``autonl_tf/models/arch``, ``--arch`` of the binaries, the ``arch.txt`` written by the search, the profiler.

Grammar (that of the architecture files published with the AutoNL checkpoints, itself the
MnasNet/EfficientNet block-string grammar plus a non-local token). One block string per line,
underscore-separated tokens, blank lines and ``#`` comments ignored::

    r<repeats>          number of times the block is repeated (the copies have stride 1, i=o)
    k<kernel>[.<k2>..]  depthwise kernel size; several sizes = mixed depthwise conv (MixNet)
    s<d><d>             strides, two digits each 1 or 2 (required)
    e<expand>           expansion ratio of the inverted bottleneck (integer >= 1)
    i<in>, o<out>       input and output channels (before the width multiplier)
    se<ratio>           squeeze-and-excitation ratio relative to the block input channels
    a<k>, p<k>          kernel size of the expansion / projection convolution (default 1)
    noskip              no identity shortcut even where shapes allow one
    sw                  swish activation in this block (ReLU6 otherwise)
    nonlocal[<r>][-<s>] a LightNL after the projection with channel ratio r (bare = 1.0) and
                        key/value stride s (default 1)

Example: ``r1_k5_s22_e6_i40_o80_se0.25_sw_nonlocal0.25``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from autonl_tf.errors import UserError

__all__ = [
    "ArchError",
    "BlockSpec",
    "decode_arch",
    "decode_block",
    "encode_arch",
    "encode_block",
    "expand_repeats",
]


class ArchError(UserError, ValueError):
    """A malformed architecture string. The message names the line, the token and the fix."""


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block string: an MBConv block, optionally followed by a LightNL, repeated ``repeats`` times."""

    repeats: int
    kernel_sizes: tuple[int, ...]
    strides: tuple[int, int]
    expand_ratio: int
    input_filters: int
    output_filters: int
    se_ratio: float | None = None
    expand_kernel: int = 1
    project_kernel: int = 1
    id_skip: bool = True
    swish: bool = False
    nonlocal_ratio: float | None = None
    nonlocal_stride: int = 1

    @property
    def kernel_size(self) -> int:
        """The (largest) depthwise kernel size."""
        return max(self.kernel_sizes)

    @property
    def stride(self) -> int:
        return self.strides[0]

    @property
    def has_nonlocal(self) -> bool:
        return self.nonlocal_ratio is not None

    @property
    def has_se(self) -> bool:
        return self.se_ratio is not None and self.se_ratio > 0


_NUMBER = r"\d+(?:\.\d+)?"
_TOKEN_FORMS = (
    "r<int>, k<int>[.<int>...], s<d><d> with d in {1,2}, e<int>, i<int>, o<int>, se<float>, "
    "a<int>, p<int>, noskip, sw, nonlocal[<float>][-<1|2>]"
)


def _fail(line: int | None, block: str, token: str, expected: str) -> ArchError:
    where = f"line {line}" if line is not None else "architecture string"
    return ArchError(f"{where} ({block!r}): bad token {token!r}: expected {expected}")


def _parse_int(value: str, line, block, token, what: str, minimum: int = 1) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < minimum:
        raise _fail(line, block, token, f"{what} as an integer >= {minimum}")
    return int(value)


def _parse_float(value: str, line, block, token, what: str) -> float:
    if not re.fullmatch(_NUMBER, value):
        raise _fail(line, block, token, f"{what} as a number like 0.25")
    return float(value)


def decode_block(block_string: str, line: int | None = None) -> BlockSpec:
    """Decodes one block string (see the module docstring) into a `BlockSpec`."""
    block_string = block_string.strip()
    if not block_string:
        raise ArchError(f"line {line}: empty block string" if line else "empty block string")
    fields: dict[str, object] = {}
    seen: set[str] = set()

    def once(key: str, token: str) -> None:
        if key in seen:
            raise _fail(line, block_string, token, f"at most one {key!r} token per block")
        seen.add(key)

    for token in block_string.split("_"):
        if token == "noskip":
            once("noskip", token)
            fields["id_skip"] = False
        elif token == "sw":
            once("sw", token)
            fields["swish"] = True
        elif token.startswith("nonlocal"):
            once("nonlocal", token)
            m = re.fullmatch(rf"nonlocal({_NUMBER})?(?:-(\d+))?", token)
            if not m:
                raise _fail(line, block_string, token, "nonlocal[<ratio>][-<stride>], e.g. nonlocal0.25-2")
            ratio = float(m.group(1)) if m.group(1) else 1.0
            if not 0.0 < ratio <= 1.0:
                raise _fail(line, block_string, token, "a non-local channel ratio in (0, 1]")
            stride = int(m.group(2)) if m.group(2) else 1
            if stride not in (1, 2):
                raise _fail(line, block_string, token, "a non-local stride of 1 or 2")
            fields["nonlocal_ratio"], fields["nonlocal_stride"] = ratio, stride
        elif token.startswith("se"):
            once("se", token)
            ratio = _parse_float(token[2:], line, block_string, token, "se<ratio>")
            if not 0.0 < ratio <= 1.0:
                raise _fail(line, block_string, token, "an SE ratio in (0, 1]")
            fields["se_ratio"] = ratio
        elif token[:1] == "s":
            once("s", token)
            if not re.fullmatch(r"s[12][12]", token):
                raise _fail(line, block_string, token, "s<d><d> with each stride digit 1 or 2, e.g. s22")
            fields["strides"] = (int(token[1]), int(token[2]))
        elif token[:1] == "k":
            once("k", token)
            parts = token[1:].split(".")
            kernels = tuple(
                _parse_int(p, line, block_string, token, "k<kernel>[.<kernel>]") for p in parts
            )
            if any(k % 2 == 0 for k in kernels):
                raise _fail(line, block_string, token, "odd kernel sizes (3, 5, 7, ...)")
            fields["kernel_sizes"] = kernels
        elif token[:1] in ("r", "e", "i", "o", "a", "p"):
            key = {"r": "repeats", "e": "expand_ratio", "i": "input_filters",
                   "o": "output_filters", "a": "expand_kernel", "p": "project_kernel"}[token[0]]
            once(key, token)
            fields[key] = _parse_int(token[1:], line, block_string, token, f"{token[0]}<{key}>")
            if key in ("expand_kernel", "project_kernel") and fields[key] % 2 == 0:
                raise _fail(line, block_string, token, "an odd kernel size")
        else:
            raise _fail(line, block_string, token, "one of " + _TOKEN_FORMS)

    for key, form in (("strides", "s<d><d>"), ("kernel_sizes", "k<kernel>"),
                      ("expand_ratio", "e<expand>"), ("input_filters", "i<in>"),
                      ("output_filters", "o<out>")):
        if key not in fields:
            where = f"line {line}" if line is not None else "architecture string"
            raise ArchError(f"{where} ({block_string!r}): missing token {form} ({key})")
    fields.setdefault("repeats", 1)
    if fields["strides"][0] != fields["strides"][1]:
        raise _fail(line, block_string, "s{}{}".format(*fields["strides"]),
                    "equal strides in both dimensions (s11 or s22)")
    return BlockSpec(**fields)


def _format_float(value: float) -> str:
    return f"{value:.6g}"


def encode_block(spec: BlockSpec) -> str:
    """Encodes a `BlockSpec` in canonical token order: r k s e i o se a p noskip sw nonlocal."""
    tokens = [
        f"r{spec.repeats}",
        "k" + ".".join(str(k) for k in spec.kernel_sizes),
        f"s{spec.strides[0]}{spec.strides[1]}",
        f"e{spec.expand_ratio}",
        f"i{spec.input_filters}",
        f"o{spec.output_filters}",
    ]
    if spec.se_ratio is not None:
        tokens.append("se" + _format_float(spec.se_ratio))
    if spec.expand_kernel != 1:
        tokens.append(f"a{spec.expand_kernel}")
    if spec.project_kernel != 1:
        tokens.append(f"p{spec.project_kernel}")
    if not spec.id_skip:
        tokens.append("noskip")
    if spec.swish:
        tokens.append("sw")
    if spec.nonlocal_ratio is not None:
        token = "nonlocal"
        if spec.nonlocal_ratio != 1.0 or spec.nonlocal_stride != 1:
            token += _format_float(spec.nonlocal_ratio)
        if spec.nonlocal_stride != 1:
            token += f"-{spec.nonlocal_stride}"
        tokens.append(token)
    return "_".join(tokens)


def _check_chain(blocks: Sequence[BlockSpec], lines: Sequence[int | None]) -> None:
    for prev, block, line in zip(blocks, blocks[1:], lines[1:], strict=False):
        if block.input_filters != prev.output_filters:
            where = f"line {line}" if line is not None else f"block {blocks.index(block)}"
            raise ArchError(
                f"{where} ({encode_block(block)!r}): bad token 'i{block.input_filters}': expected "
                f"i{prev.output_filters}, the output channels of the previous block (channels must chain)"
            )


def decode_arch(text: str | Iterable[str]) -> tuple[BlockSpec, ...]:
    """Decodes an architecture (one block string per line, or a list of block strings).

    A single line may also hold several block strings separated by spaces, commas or ``;``, so
    that a whole architecture fits in one command-line flag. Channels must chain from block to
    block (``i`` of each block equals ``o`` of the previous one).
    """
    lines = text.splitlines() if isinstance(text, str) else list(text)
    blocks: list[BlockSpec] = []
    numbers: list[int | None] = []
    for number, raw in enumerate(lines, start=1):
        content = raw.split("#", 1)[0].strip()
        for piece in re.split(r"[\s,;]+", content):
            if piece:
                blocks.append(decode_block(piece, line=number))
                numbers.append(number)
    if not blocks:
        raise ArchError("architecture has no block strings (expected one block string per line)")
    _check_chain(blocks, numbers)
    return tuple(blocks)


def encode_arch(blocks: Sequence[BlockSpec]) -> str:
    """Encodes blocks one per line (the published file format), ending with a newline."""
    _check_chain(list(blocks), [None] * len(blocks))
    return "".join(encode_block(b) + "\n" for b in blocks)


def expand_repeats(blocks: Sequence[BlockSpec]) -> list[BlockSpec]:
    """Unrolls ``repeats``: the first copy keeps the strides and channels, the others are i=o, s11."""
    unrolled: list[BlockSpec] = []
    for block in blocks:
        unrolled.append(dataclasses.replace(block, repeats=1))
        for _ in range(block.repeats - 1):
            unrolled.append(dataclasses.replace(
                block, repeats=1, strides=(1, 1), input_filters=block.output_filters))
    return unrolled
