"""Task definitions: each owns its prompt rendering, output parser and scorer."""
