"""LightningModules; importing this registers their short names for YAML."""

__all__: list[str] = []
