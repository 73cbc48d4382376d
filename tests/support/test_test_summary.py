"""build-support/test-summary.py, on JUnit reports that a real pytest writes: a skip fails the run
unless its reason says the test needs hardware this machine cannot have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUMMARY = Path("build-support/test-summary.py").resolve()


def report(pytester: pytest.Pytester, source: str, name: str = "tests") -> Path:
    """Runs pytest on `source` and returns the directory holding its JUnit report."""
    reports = pytester.path / "reports"
    pytester.makepyfile(**{f"test_{name}": source})
    pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={reports / name}.xml",
                       f"test_{name}.py")
    assert (reports / f"{name}.xml").is_file()
    return reports


def summary(reports: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SUMMARY), str(reports)], capture_output=True,
                          text=True)


def test_all_passed(pytester: pytest.Pytester) -> None:
    result = summary(report(pytester, "def test_a():\n    pass\n\ndef test_b():\n    pass\n"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tests: 2 passed, 0 failed, 0 skipped\n"


def test_an_unexpected_skip_fails_the_run(pytester: pytest.Pytester) -> None:
    source = (
        "import shutil, pytest\n\n"
        "def test_runs():\n    pass\n\n"
        "@pytest.mark.skipif(True, reason='softhsm2-util is not installed')\n"
        "def test_token():\n    pass\n"
    )
    result = summary(report(pytester, source))
    assert result.returncode == 1
    assert result.stdout == "tests: 1 passed, 0 failed, 1 skipped\n"
    assert "test_tests::test_token (softhsm2-util is not installed)" in result.stderr


def test_a_skip_in_a_fixture_fails_the_run(pytester: pytest.Pytester) -> None:
    source = (
        "import pytest\n\n"
        "@pytest.fixture\ndef tool():\n    pytest.skip('no diffoscope')\n\n"
        "def test_a(tool):\n    pass\n\ndef test_b():\n    pass\n"
    )
    result = summary(report(pytester, source))
    assert result.returncode == 1
    assert "1 skipped" in result.stdout and "(no diffoscope)" in result.stderr


def test_a_skip_for_hardware_does_not_fail_the_run(pytester: pytest.Pytester) -> None:
    source = (
        "import pytest\n\n"
        "def test_runs():\n    pass\n\n"
        "@pytest.mark.skipif(True, reason='needs hardware: a CUDA GPU')\n"
        "def test_gpu():\n    pass\n\n"
        "def test_tpu():\n    pytest.skip('needs hardware: a TPU')\n"
    )
    result = summary(report(pytester, source))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tests: 1 passed, 0 failed, 2 skipped (2 for hardware)\n"
    assert "test_tests::test_gpu (needs hardware: a CUDA GPU)" in result.stderr


def test_a_failure_fails_the_run(pytester: pytest.Pytester) -> None:
    result = summary(report(pytester, "def test_a():\n    assert 1 == 2\n\ndef test_b():\n"
                                      "    pass\n"))
    assert result.returncode == 1
    assert result.stdout == "tests: 1 passed, 1 failed, 0 skipped\n"
    assert "failed: test_tests::test_a" in result.stderr


def test_counts_every_report_and_a_target_that_collected_nothing_fails(
    pytester: pytest.Pytester,
) -> None:
    report(pytester, "def test_a():\n    pass\n", name="one")
    reports = report(pytester, "def helper():\n    pass\n", name="empty")
    result = summary(reports)
    assert result.returncode == 1
    assert result.stdout == "tests: 1 passed, 0 failed, 0 skipped\n"
    assert "empty.xml: the test target collected no tests" in result.stderr


def test_no_reports_fails(tmp_path: Path) -> None:
    result = summary(tmp_path)
    assert result.returncode == 1
    assert "no test ran" in result.stderr


def batch_report(pytester: pytest.Pytester, sources: dict[str, str]) -> Path:
    """Runs one pytest over several files, as Pants runs a batch, and names its report as Pants
    does: `batch-of-<first file>+<N>-files.xml`."""
    reports = pytester.path / "reports"
    name = f"batch-of-tests.test_{next(iter(sources))}.py.tests+{len(sources) - 1}-files.xml"
    pytester.makepyfile(**{f"test_{stem}": source for stem, source in sources.items()})
    pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={reports / name}",
                       *(f"test_{stem}.py" for stem in sources))
    assert (reports / name).is_file()
    return reports


def test_a_batch_counts_every_test_and_a_failure_names_its_file(
    pytester: pytest.Pytester,
) -> None:
    reports = batch_report(pytester, {
        "first": "def test_a():\n    pass\n\ndef test_b():\n    pass\n",
        "second": "def test_c():\n    assert 1 == 2\n",
        "third": "def test_d():\n    pass\n",
    })
    result = summary(reports)
    assert result.returncode == 1
    assert result.stdout == "tests: 3 passed, 1 failed, 0 skipped\n"
    assert "failed: test_second::test_c" in result.stderr


def test_a_file_of_a_batch_that_collected_nothing_fails(pytester: pytest.Pytester) -> None:
    reports = batch_report(pytester, {
        "first": "def test_a():\n    pass\n",
        "renamed": "def helper():\n    pass\n",
    })
    result = summary(reports)
    assert result.returncode == 1
    assert result.stdout == "tests: 1 passed, 0 failed, 0 skipped\n"
    assert "2 files ran in this batch but only 1 had tests (test_first)" in result.stderr
