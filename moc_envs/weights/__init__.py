"""Weights folders: where they are found, the manifest that is checked before anything is read,
safe reads of user files and atomic, link-refusing writes.
"""
