"""Totals the JUnit reports `./pants test` writes; fails the run unless every test ran and passed.

Pants prints one line per test target; a run needs its totals, and must fail when:
- a test failed or errored;
- a test was skipped: a skipped test proves nothing, and a tool missing on this machine is a
  failure of the setup (`./pants test` installs what the tests run: build-support/test-deps).
  The one allowed skip is a test that needs hardware this machine cannot have: its skip reason
  starts with HARDWARE_MARKER, e.g. `pytest.skip("needs hardware: a CUDA GPU")`;
- a target's pytest collected nothing (a file whose tests were renamed away passes silently
  otherwise). Pants runs the files of a `batch_compatibility_tag` in one pytest process with one
  report, `batch-of-<first file>+<N>-files.xml`: there, N+1 files must each have a test (a
  test's classname names its file, e.g. `tests.core.test_seal`, so a failure names its file).

The launcher runs it after every `./pants test` over that run's reports (it clears the directory
first). Usage: python3 build-support/test-summary.py [dist/test/reports]
Prints `tests: N passed, N failed, N skipped` (skips for hardware are among the skipped, and also
counted apart); exits 0 on success, 1 otherwise.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# The reason prefix of the only skip that does not fail the run.
HARDWARE_MARKER = "needs hardware:"


# Pants' name for the report of a batch: the first file's, and how many other files ran with it.
BATCH_REPORT = re.compile(r"^batch-of-.+\+(\d+)-files\.xml$")


def _name(case: ET.Element) -> str:
    return f"{case.get('classname', '')}::{case.get('name', '')}"


def _module(case: ET.Element) -> str:
    """The test file's module (`tests.core.test_seal`), from a classname that may go on with a
    class (`tests.core.test_seal.TestSeal`): up to the first `test_*`/`*_test` component."""
    parts = case.get("classname", "").split(".")
    for index, part in enumerate(parts):
        if part.startswith("test_") or part.endswith("_test"):
            return ".".join(parts[: index + 1])
    return ".".join(parts)


def _files_without_tests(report: str, cases: list[ET.Element]) -> list[str]:
    """A batch's report holds every file's tests: each of its N+1 files must have one."""
    batch = BATCH_REPORT.match(report)
    modules = sorted({_module(case) for case in cases})
    if not cases or not batch or len(modules) >= int(batch.group(1)) + 1:
        return []
    return [f"{report}: {int(batch.group(1)) + 1} files ran in this batch but only "
            f"{len(modules)} had tests ({', '.join(modules)}): a file collected no tests"]


def main(report_dir: str) -> int:
    reports = sorted(Path(report_dir).glob("*.xml"))
    if not reports:
        print(f"no test reports in {report_dir}: no test ran", file=sys.stderr)
        return 1
    passed = 0
    failed: list[str] = []
    unexpected: list[str] = []  # skipped, not for hardware
    hardware: list[str] = []
    empty: list[str] = []
    for report in reports:
        cases = list(ET.parse(report).getroot().iter("testcase"))
        if not cases:
            empty.append(f"{report.name}: the test target collected no tests")
        empty.extend(_files_without_tests(report.name, cases))
        for case in cases:
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(_name(case))
                continue
            skip = case.find("skipped")
            if skip is None:
                passed += 1
                continue
            reason = skip.get("message") or ""  # pytest: the reason given to skip/skipif
            if reason.startswith(HARDWARE_MARKER):
                hardware.append(f"{_name(case)} ({reason})")
            else:
                unexpected.append(f"{_name(case)} ({reason or 'no reason given'})")
    for line in empty:
        print(line, file=sys.stderr)
    for name in failed:
        print(f"failed: {name}", file=sys.stderr)
    for name in unexpected:
        print(f"skipped, which fails the run (only a '{HARDWARE_MARKER} ...' skip may pass): "
              f"{name}", file=sys.stderr)
    for name in hardware:
        print(f"skipped for hardware this machine lacks: {name}", file=sys.stderr)
    skipped = len(unexpected) + len(hardware)
    extra = f" ({len(hardware)} for hardware)" if hardware else ""
    print(f"tests: {passed} passed, {len(failed)} failed, {skipped} skipped{extra}")
    return 0 if passed > 0 and not failed and not unexpected and not empty else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist/test/reports"))
