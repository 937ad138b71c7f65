"""The command line: a thin Typer app (`app.py`) and the Rich views it prints. Parses, calls stage functions,
prints; no decisions are made here."""
