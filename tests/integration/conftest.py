import pytest

# A whole job under load (Ray start-up, training, a kill and a resume) may take minutes: each
# integration test gets this long before pytest-timeout fails it with its threads' stacks.
INTEGRATION_TIMEOUT_S = 1200


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(INTEGRATION_TIMEOUT_S))
