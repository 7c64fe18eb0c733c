"""Prints, with the Python protocol/ code, what the web client's committee writing test holds
the TypeScript to (JSON on standard input: ``[{"content_type", "fields"}, ...]``, a field
null for one the SDK leaves out): each body as ``protocol.committees.encode`` makes it, which
is what ``clients.sdk.committees.Committees`` sends, as text, or ``{"error": ...}`` when it
refuses the fields. Run by test/committee_writing.test.ts with the project's virtual
environment; not a pytest module."""

from __future__ import annotations

import json
import sys

from protocol import committees


def main() -> None:
    answers = []
    for case in json.load(sys.stdin):
        try:
            body = committees.encode(case["content_type"], case["fields"])
        except (committees.ContentError, UnicodeEncodeError) as exc:
            answers.append({"error": str(exc)})
            continue
        answers.append({"body": body.decode("utf-8")})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
