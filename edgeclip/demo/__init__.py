"""`edgeclip demo`: every step of edgeclip on the built-in default, with a report (see run.py)."""
