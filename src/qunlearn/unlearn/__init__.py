"""Unlearning: the method plugins (objectives.py, sure.py, ...: torch-free specs registered in
``qunlearn.plugins.METHODS``, implementations imported lazily) and the loop with hooks (loop.py).
Import ``qunlearn.unlearn.loop`` for the loop; this package itself imports no torch."""
