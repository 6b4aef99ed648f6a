"""The toy world: a procedural fine-grained aircraft world and its small pretrained text-to-image prior.

Nothing is imported here: ``python -m bob.toyworld.demo`` must set thread settings before torch loads.
"""
