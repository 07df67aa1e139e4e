"""The architecture-string codec: grammar, round trips and strict errors."""
# bazel: suite=models

import pytest

from autonl_tf.arch import (
    ArchError,
    BlockSpec,
    decode_arch,
    decode_block,
    encode_arch,
    encode_block,
    expand_repeats,
)
from autonl_tf.models import registry


@pytest.mark.parametrize("path", sorted(registry.ARCH_DIR.glob("*.txt")), ids=lambda p: p.stem)
def test_named_architecture_files_round_trip(path):
    text = path.read_text()
    assert encode_arch(decode_arch(text)) == text


@pytest.mark.parametrize("block", [
    "r1_k3_s11_e1_i32_o16_noskip",
    "r2_k3.5.7_s22_e6_i16_o24_se0.25_sw",
    "r1_k5_s22_e6_i40_o80_se0.25_a3_p3_sw_nonlocal0.25",
    "r1_k3_s11_e3_i40_o40_sw_nonlocal0.125-2",
    "r1_k3_s11_e3_i40_o40_nonlocal",
    "r4_k3_s11_e3_i40_o40_nonlocal1-2",
])
def test_block_round_trip(block):
    assert encode_block(decode_block(block)) == block


def test_decode_fields():
    spec = decode_block("r2_k3.5_s22_e6_i16_o24_se0.25_a3_p5_noskip_sw_nonlocal0.125-2")
    assert spec == BlockSpec(repeats=2, kernel_sizes=(3, 5), strides=(2, 2), expand_ratio=6,
                             input_filters=16, output_filters=24, se_ratio=0.25, expand_kernel=3,
                             project_kernel=5, id_skip=False, swish=True, nonlocal_ratio=0.125,
                             nonlocal_stride=2)
    assert decode_block("r1_k3_s11_e1_i8_o8_nonlocal").nonlocal_ratio == 1.0
    assert decode_block("r1_k3_s11_e1_i8_o8").nonlocal_ratio is None


def test_token_order_is_free_and_encoding_canonical():
    spec = decode_block("sw_o24_i16_e6_s22_k3_r1")
    assert encode_block(spec) == "r1_k3_s22_e6_i16_o24_sw"


def test_arch_string_on_one_line_and_comments():
    one_line = decode_arch("r1_k3_s11_e1_i32_o16, r1_k3_s22_e6_i16_o24")
    from_lines = decode_arch("# a comment\nr1_k3_s11_e1_i32_o16\n\nr1_k3_s22_e6_i16_o24  # x\n")
    assert one_line == from_lines and len(one_line) == 2


def test_expand_repeats():
    blocks = expand_repeats(decode_arch("r3_k3_s22_e6_i16_o24"))
    assert [(b.strides, b.input_filters, b.output_filters) for b in blocks] == [
        ((2, 2), 16, 24), ((1, 1), 24, 24), ((1, 1), 24, 24)]


@pytest.mark.parametrize("text, fragments", [
    ("r1_k3_s11_e1_i32_o16_x7", ["line 1", "'x7'", "expected"]),
    ("r1_k3_e1_i32_o16", ["line 1", "missing token s<d><d>"]),
    ("r1_k3_s13_e1_i32_o16", ["'s13'", "stride digit 1 or 2"]),
    ("r1_k3_s1_e1_i32_o16", ["'s1'", "s<d><d>"]),
    ("r1_kx_s11_e1_i32_o16", ["'kx'", "k<kernel>"]),
    ("r1_k4_s11_e1_i32_o16", ["'k4'", "odd kernel"]),
    ("r1_k3_s11_e1.5_i32_o16", ["'e1.5'", "integer"]),
    ("r1_k3_s11_e1_i32_o16_sefoo", ["'sefoo'", "number"]),
    ("r1_k3_s11_e1_i32_o16_nonlocal0.25-3", ["'nonlocal0.25-3'", "stride of 1 or 2"]),
    ("r1_k3_s11_e1_i32_o16_nonlocalx", ["'nonlocalx'", "nonlocal[<ratio>]"]),
    ("r1_k3_s12_e1_i32_o16", ["'s12'", "equal strides"]),
    ("r1_k3_s11_e1_i32_o16_sw_sw", ["'sw'", "at most one"]),
    ("r1_k3_s11_e1_i32_o16\nr1_k3_s22_e6_i24_o24", ["line 2", "'i24'", "expected i16", "chain"]),
    ("", ["no block strings"]),
    ("# only a comment\n", ["no block strings"]),
])
def test_malformed_strings_name_line_token_and_expectation(text, fragments):
    with pytest.raises(ArchError) as err:
        decode_arch(text)
    for fragment in fragments:
        assert fragment in str(err.value)
