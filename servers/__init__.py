"""Reference chat servers (SPEC.md), installed as the package ``wsbench_servers``.

Each server (``tornado_server`` and its ``tornado_*`` modules, ``aiohttp_server`` and its ``aiohttp_*``
modules; the ``*_server`` module is the entry point and assembles ``ChatServer``) is self-contained
protocol-wise; they share only templates, static files, the command-line option definitions in
``options.py``, the pure policy of ``policy.py``, the bounds of ``hardening.py`` and the process figures
of ``meter.py``. Nothing here imports ``wsbench`` but ``wsbench.fdlimit`` (standard library only: the
open-file rule, one copy for the tools and the servers).
"""
