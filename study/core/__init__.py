"""The lowest layer: errors, the plug-in registry, hashing and seeds, paths, the MLflow contract.

Imports nothing else of ``study`` or ``analysis``; every other layer (and ``analysis``) may import it.
"""
