"""The browser client, served by the server itself (issue 12).

Its source is clients/web/ (TypeScript); ``make web`` builds it into ``static/`` here, which is
committed, so that a machine with only Python serves it. ``make test`` rebuilds it and checks
the bytes are the same.
"""
