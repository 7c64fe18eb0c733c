"""Attaché's shared core: pure, I/O-free code used by the server and every client.

Policy decisions and every composition of cryptographic primitives live here and only here.
"""
