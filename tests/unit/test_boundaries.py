"""Architecture rules that keep the parse path and the CLI cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def test_spec_plan_and_cli_import_no_airflow() -> None:
    code = (
        "import sys, recovery_provider.check, recovery_provider.cli.main, recovery_provider.cli.output;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'boto3', 'botocore', 's3fs', 'psycopg', 'psycopg2'));"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
