"""``alliance demo``: a populated demo alliance of six fictional brands in one command (docs/demo.md)."""
