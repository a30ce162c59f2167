"""Reference chat servers (SPEC.md), installed as the package ``wsbench_servers``.

Each server module is self-contained protocol-wise; they share only templates, static files, the
command-line option definitions in ``options.py``, the pure policy of ``policy.py`` and the bounds of
``hardening.py``. Nothing here imports ``wsbench`` but ``wsbench.fdlimit`` (standard library only: the
open-file rule, one copy for the tools and the servers).
"""
