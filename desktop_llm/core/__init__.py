"""Pure-Python domain: no GUI, engine, hub or fine-tune imports here."""
