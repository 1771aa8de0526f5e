"""Coupon codes: 85 random bits, Crockford base32, a check symbol that catches typos."""

from __future__ import annotations

import itertools

import pytest

from alliance.benefits import codes


def test_codes_are_random_typeable_and_self_checking() -> None:
    generated = {codes.generate_code() for _ in range(2_000)}
    assert len(generated) == 2_000
    for code in itertools.islice(generated, 200):
        assert len(code) == codes.CODE_SYMBOLS == 18
        assert set(code) <= set(codes.ALPHABET)
        assert codes.normalize_code(code) == code
        shown = codes.display(code)
        assert shown.count("-") == 2
        assert codes.normalize_code(shown.lower()) == code
    assert codes.RANDOM_BITS >= 80


def test_reading_is_forgiving_in_crockfords_way() -> None:
    code = codes.generate_code()
    typed = " ".join(codes.display(code).lower().replace("0", "o").replace("1", "l").split("-"))
    assert codes.normalize_code(typed) == code


def test_every_single_substitution_and_adjacent_swap_is_caught() -> None:
    code = codes.generate_code()
    for position in range(len(code)):
        for symbol in codes.ALPHABET:
            if symbol != code[position]:
                wrong = code[:position] + symbol + code[position + 1 :]
                with pytest.raises(codes.MalformedCode):
                    codes.normalize_code(wrong)
    for position in range(len(code) - 1):
        if code[position] != code[position + 1]:
            swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
            with pytest.raises(codes.MalformedCode):
                codes.normalize_code(swapped)


@pytest.mark.parametrize("text", ["", "ABC", "U" * 18, "!" * 18, "A" * 65, "7K3M9Q-XW2HBD-T4N8Z"])
def test_malformed_codes_are_refused(text: str) -> None:
    with pytest.raises(codes.MalformedCode):
        codes.normalize_code(text)


def test_digests_are_stable_and_domain_separated() -> None:
    code = codes.generate_code()
    assert codes.code_digest(code) == codes.code_digest(code)
    assert len(codes.code_digest(code)) == 64
    assert codes.code_digest(code) != codes.code_digest(codes.generate_code())
