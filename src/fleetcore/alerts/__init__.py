"""Alert channels: telling operators what needs them (``--alerts``)."""
