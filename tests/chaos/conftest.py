"""The chaos suite shares the integration suite's real-master fixture."""

from tests.integration.conftest import run_master as run_master  # the fixture, re-exported
