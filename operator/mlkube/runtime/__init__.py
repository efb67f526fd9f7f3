"""The programs that run in pods: trainer, model server and drift checker.

The runtime never imports kopf or the controller (import-linter enforces it).
"""
