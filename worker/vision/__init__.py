"""The vision code: decoding images, finding faces (BlazeFace on LiteRT), framing them, classifying them.

Imports nothing of the job store (``worker.store``) or the network (``worker.net``): make lint's
import contracts (pyproject.toml) check it.
"""
