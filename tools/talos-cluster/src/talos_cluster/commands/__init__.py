"""One module per command: ``create``, ``destroy``, ``show``."""
