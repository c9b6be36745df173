"""Private implementation of :mod:`harness.report` (tables, figures, the HTML index).

Import from :mod:`harness.report`; the layout of this package may change.
"""
