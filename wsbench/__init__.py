"""wsbench: load-test and conformance-check WebSocket chat (broadcast) servers."""

__version__ = "0.1.0"
