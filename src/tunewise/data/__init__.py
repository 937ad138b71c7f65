"""Reading, checking, cleaning and splitting user data."""
