"""What happens to a file a family sends, from the request to the coordinator's screen.

The web process only streams the bytes into a private quarantine (`uploads.py`) after a
look at their first bytes (`types.py`). A worker then opens each file, but only inside a
child process with hard limits and no network or filesystem (`sandbox.py`), which hands
back pixels or a rewritten scan; the worker builds the copy that coordinators see from
those alone (`pdf.py`, `images.py`, `dicom.py`) and records every state (`pipeline.py`).
What a family reads about a refusal is worded once, in `messages.py`.

`sandbox.py`, `types.py` and the three rebuilding modules load no Django: the sandboxed
child imports them.
"""
