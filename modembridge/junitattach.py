"""Files attached to JUnit test cases, the way Jenkins' JUnit Attachments reads them.

The plugin reads a line ``[[ATTACHMENT|/absolute/path]]`` on its own in a test case's
``system-out`` or ``system-err``. pytest's junitxml writes those elements only when
``junit_logging`` asks for captured output, and then per phase; so the line is added
where junitxml will put the teardown's output, or, when it writes none, as an element
of its own. Either way each test case ends up with one element holding the line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _pytest.junitxml import xml_key

# junitxml's junit_logging value -> the report section it copies into the XML.
_SECTION_FOR_LOGGING = {
    "system-out": "stdout",
    "out-err": "stdout",
    "all": "stdout",
    "system-err": "stderr",
    "log": "log",
}


class JUnitAttacher:
    """Attaches the files noted per test (node id -> path) to their test cases."""

    def __init__(self, pending: dict[str, Path], config: pytest.Config) -> None:
        self.pending = pending
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Before junitxml closes the test case, write the attachment line into it."""
        if report.when != "teardown":
            return
        path = self.pending.pop(report.nodeid, None)
        if path is not None:
            self._attach(report, path)

    def _attach(self, report: pytest.TestReport, path: Path) -> None:
        xml = self.config.stash.get(xml_key, None)
        if xml is None:
            return
        line = f"[[ATTACHMENT|{path}]]\n"
        reporter = xml.node_reporter(report)
        written = [n for n in reporter.nodes if n.tag in ("system-out", "system-err")]
        section = _SECTION_FOR_LOGGING.get(xml.logging)

        if written:
            written[0].text = (written[0].text or "") + "\n" + line
        elif section is not None and xml.log_passing_tests:
            # junitxml writes this teardown's output itself: join it.
            report.sections.append((f"Captured {section} modembridge", line))
        else:
            node = ET.Element("system-out")
            node.text = line
            reporter.append(node)
