"""Markers for the model tests."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: 1024 px reference checks (tens of seconds on 2 cores); they run by "
                                       "default, deselect with -m 'not slow' for a quick loop")
