"""Attaché clients: the Python SDK (``clients.sdk``) and the ``attache`` CLI (``clients.cli``)."""
