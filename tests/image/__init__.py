"""Tests of the Talos OS image (talos-image): the root filesystem, the boot artefacts."""
