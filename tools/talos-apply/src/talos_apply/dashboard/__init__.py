"""``dashboard``: live metrics of the nodes. :mod:`.data` fetches and computes (no Textual);
:mod:`.screen` draws it with Textual, imported only when the command runs."""
