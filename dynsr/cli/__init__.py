"""Command-line interface: ``dynsr COMMAND ...`` (see ``dynsr --help``)."""
