"""Models: their families (`families/`, one descriptor each), where they come from (`sources`:
teacher specs, HF directories, MiniLM, the demo teacher, open_clip weights), towers, tokenizers,
preprocessing, and checkpoint I/O (`checkpoint`, `model_io`)."""
