from tests.drivers.conftest import relay_cmd, run_scenario  # noqa: F401  (shared fixtures)
