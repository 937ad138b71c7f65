"""`tunewise ui`: a local web app to browse runs (runs, run, predictions, compare), server-rendered with Jinja2.

`create_app` in `app.py` builds it; `security.py` holds the bind, key, CSRF and path rules; `run_data.py` reads run
folders into cached tables. Nothing here executes code from a run folder: runs are read as JSON and text.
"""
