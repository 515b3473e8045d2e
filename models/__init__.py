"""The model files the workers load, shipped as package data: the classifier and the face detector
(``.tflite``) with their metadata (``.json``), here and in subfolders such as ``previous/``.

``worker.settings.MODELS_DIR`` finds this folder through ``importlib.resources``, so an installed wheel
finds its models wherever it runs. The training files (``.keras``) are not shipped (pyproject.toml).
"""
