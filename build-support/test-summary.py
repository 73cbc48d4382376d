"""Summarizes the JUnit reports `./pants test` writes, and fails when no test really ran.

Pants prints one line per test target; CI needs the totals, and must fail when a target's pytest
collected nothing (a file whose tests were renamed away passes silently otherwise).
Usage: python3 build-support/test-summary.py dist/test/reports
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(report_dir: str) -> int:
    reports = sorted(Path(report_dir).glob("*.xml"))
    if not reports:
        print(f"no test reports in {report_dir}: no test ran", file=sys.stderr)
        return 1
    passed = failed = skipped = 0
    empty = []
    for report in reports:
        root = ET.parse(report).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        tests = sum(int(s.get("tests", 0)) for s in suites)
        bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
        skip = sum(int(s.get("skipped", 0)) for s in suites)
        if tests == 0:
            empty.append(report.name)
        passed += tests - bad - skip
        failed += bad
        skipped += skip
    for name in empty:
        print(f"{name}: the test target collected no tests", file=sys.stderr)
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if passed > 0 and failed == 0 and not empty else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist/test/reports"))
