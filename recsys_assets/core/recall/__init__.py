"""Recall models: plain numpy/scipy/implicit code behind one small protocol (base.py)."""
