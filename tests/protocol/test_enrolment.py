from __future__ import annotations

import re

from protocol import enrolment


def test_codes_are_random_grouped_base32() -> None:
    codes = {enrolment.new_code() for _ in range(100)}
    assert len(codes) == 100
    for code in codes:
        assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){5}", code)


def test_digest_ignores_case_spaces_and_dashes_only() -> None:
    code = enrolment.new_code()
    assert enrolment.code_digest(code) == enrolment.code_digest(code.lower().replace("-", " "))
    other = ("B" if code[0] != "B" else "C") + code[1:]
    assert enrolment.code_digest(code) != enrolment.code_digest(other)
    assert len(enrolment.code_digest(code)) == 32
