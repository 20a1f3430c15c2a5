"""One module per ``talos-image`` command."""
