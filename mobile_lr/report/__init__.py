"""The run report: ``report.md``, ``report.html`` that opens in a browser, and PNG figures.

:mod:`.story` reads a run's log rows back into a timeline (steps, pauses, events,
re-plans, the stop); :mod:`.verdict` turns the summaries into the manager's paired
gains over its peers and the report's sentences; :mod:`.figures` draws them;
:mod:`.document` writes the Markdown and HTML. matplotlib (the ``demo`` extra) is
needed for the figures.
"""

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import matplotlib  # noqa: F401  (named here so a missing extra names this package)

from mobile_lr.report.document import SUMMARY_COLUMNS, Assessment, assess, format_table, write_report

__all__ = ["SUMMARY_COLUMNS", "Assessment", "assess", "format_table", "write_report"]
