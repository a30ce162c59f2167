"""Reference chat servers (SPEC.md), installed as the package ``wsbench_servers``.

Each server module is self-contained protocol-wise; they share only templates, static files and the
command-line option definitions in ``options.py``. Nothing here imports ``wsbench``.
"""
