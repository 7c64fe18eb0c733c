"""The coalition policy: published versions (PROTOCOL.md §18), stored and served, never made.

The server checks each version's chain before storing it, but holds no authority key and
cannot make one count: what makes a version valid is the nations' signatures.
"""
