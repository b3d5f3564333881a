"""A simulator of the WhatsApp Business API's upstreams, for ``--demo``, the tests and benchmarks.

It imports nothing from the exporter: it stands for the real thing on the other side of the wire.
"""
